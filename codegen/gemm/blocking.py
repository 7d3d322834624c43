"""Blocking of the GEMM driver (:mod:`codegen.gemm.driver`): the ``kc``/``nc`` block sizes, the row tiles of op(A),
the thread grid a multi-threaded GEMM cuts C into (a cost model of micro-kernel work plus repeated packing), and
the workspace each needs. Pure Python: what the driver emits is decided here."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from codegen.gemm.config import GemmConfig, default_config, host_vector_bits

PARALLEL_MIN_MACS = 1 << 17  # below this many multiply-adds a GEMM runs on one thread (a region costs ~µs)
PACK_COST = 8  # packing one element costs about as many multiply-adds (measured 6-9 on Zen 4 for A and B panels)


def balanced_block(total: int, limit: int, multiple: int = 1) -> int:
    """The smallest block size (a multiple of ``multiple``) that splits ``total`` into as few blocks as ``limit``."""
    blocks = max(1, -(-total // limit))
    size = -(-total // blocks)
    return min(limit, -(-size // multiple) * multiple)


@dataclass(frozen=True)
class Grid:
    """Chunks of C per batch item: ``rows`` bands of ``band`` rows (the last ``last_band``) × ``cols`` slices of
    ``width`` columns (the last ``last_width``)."""

    rows: int
    band: int
    cols: int
    width: int
    m: int
    n: int

    @property
    def last_band(self) -> int:
        return self.m - (self.rows - 1) * self.band

    @property
    def last_width(self) -> int:
        return self.n - (self.cols - 1) * self.width

    def shapes(self) -> list[tuple[int, int]]:
        """The distinct chunk shapes (rows, columns), at most four."""
        return sorted({(r, c) for r in {self.band, self.last_band} for c in {self.width, self.last_width}})


def _split(total: int, parts: int, multiple: int) -> tuple[int, int]:
    """(parts actually used, size of each but the last) for ``total`` cut into ``parts`` multiples of ``multiple``
    (one part: all of ``total``)."""
    tiles = -(-total // multiple)
    size = -(-tiles // parts) * multiple
    used = -(-total // size)
    return (1, total) if used == 1 else (used, size)


def partition(m: int, n: int, k: int, batch: int, cfg: GemmConfig, threads: int,
              global_tiles: bool = False) -> Grid | None:
    """The grid of chunks for ``threads`` threads (see the module docstring), or None when the GEMM runs on one
    thread (one thread, one chunk in all, or too little work for a parallel region to pay off). With
    ``global_tiles`` only grids whose bands cut C's rows into the row tiles of the whole (``row_tiles(m, mr)``, the
    layout of a prepacked A) are considered."""
    if threads <= 1 or batch * m * n * k < PARALLEL_MIN_MACS:
        return None
    best, best_cost = None, None
    row_tiles_, col_panels = -(-m // cfg.mr), -(-n // cfg.nr)
    for rp, cp in itertools.product(range(1, min(row_tiles_, 2 * threads) + 1),
                                    range(1, min(col_panels, 2 * threads) + 1)):
        rp, band = _split(m, rp, cfg.mr)
        cp, width = _split(n, cp, cfg.nr)
        if global_tiles and rp > 1 and not _same_tiles(m, band, rp, cfg.mr):
            continue
        chunks = batch * rp * cp
        rounds = -(-chunks // threads)
        packing = band * k * -(-width // cfg.nc) + width * k
        cost = (rounds * (band * width * k + PACK_COST * packing), chunks)
        if best_cost is None or cost < best_cost:
            best, best_cost = Grid(rp, band, cp, width, m, n), cost
    assert best is not None
    return best if batch * best.rows * best.cols > 1 else None


def _same_tiles(m: int, band: int, bands: int, mr: int) -> bool:
    """Whether bands of ``band`` rows (the last the rest) tile each band as :func:`row_tiles` tiles all ``m`` rows
    (the bands start at multiples of ``mr``; only the last band's edge tiles can differ)."""
    start = (bands - 1) * band
    full, tail = row_tiles(m, mr)
    last_full, last_tail = row_tiles(m - start, mr)
    return start + last_full == full and last_tail == tail


def tile_origins(m: int, mr: int) -> list[tuple[int, int]]:
    """(first row, rows) of every row tile of an ``m``-row op(A), in the order the driver visits them."""
    full, tail = row_tiles(m, mr)
    tiles = [(row, mr) for row in range(0, full, mr)]
    for rows in tail:
        tiles.append((full, rows))
        full += rows
    return tiles


def depth_block(k: int, cfg: GemmConfig) -> int:
    """The ``kc`` block the driver uses for depth ``k``."""
    return balanced_block(k, cfg.kc, cfg.vec)


def row_tiles(m: int, mr: int) -> tuple[int, list[int]]:
    """Rows covered by full ``mr`` tiles, then the heights of the edge tiles.

    A remainder under ``mr / 2`` would leave too few independent accumulators to hide the FMA latency, so it
    is merged with the last full tile and the pair split evenly (M = 128, mr = 6: 20 tiles of 6, then 4 + 4)."""
    full, rem = m - m % mr, m % mr
    if rem == 0:
        return full, []
    if 2 * rem >= mr or full == 0:
        return full, [rem]
    rows = mr + rem
    return full - mr, [rows - rows // 2, rows // 2]


def packed_b_bytes(kc: int, nc: int, cfg: GemmConfig) -> int:
    return -(-kc * nc * cfg.itemsize // 64) * 64


def _serial_workspace(m: int, n: int, k: int, cfg: GemmConfig, trans_c: bool = False) -> int:
    """One thread's workspace for an ``m x n`` block over depth ``k``: the packed B block (rounded up to 64 bytes)
    and the A micro-panel with one vector of slack, rounded up to 64 bytes; for a transposed C over several depth
    blocks then the partial sums of one column block (:func:`partial_sums_bytes`)."""
    kc = balanced_block(k, cfg.kc, cfg.vec)
    nc = balanced_block(n, cfg.nc, cfg.nr)
    return packed_b_bytes(kc, nc, cfg) + a_panel_bytes(kc, cfg) + (partial_sums_bytes(m, n, k, cfg) if trans_c else 0)


def a_panel_bytes(kc: int, cfg: GemmConfig) -> int:
    """Bytes of the workspace's A micro-panel (``mr x kc`` and one vector of slack), rounded up to 64."""
    return -(-(kc * cfg.mr + cfg.vec) * cfg.itemsize // 64) * 64


def partial_sums_bytes(m: int, n: int, k: int, cfg: GemmConfig) -> int:
    """Bytes of the partial sums a transposed-C GEMM keeps between depth blocks (``m`` rows of one ``nc``-wide
    column block, its rows ``nc`` apart; rounded up to 64), none when the depth is one block."""
    if k <= balanced_block(k, cfg.kc, cfg.vec):
        return 0
    return -(-m * balanced_block(n, cfg.nc, cfg.nr) * cfg.itemsize // 64) * 64


def workspace_bytes(m: int, n: int, k: int, dtype: str = "float32", config: GemmConfig | None = None,
                    threads: int = 1, batch: int = 1, global_tiles: bool = False, trans_c: bool = False) -> int:
    """Bytes of the workspace ``W`` the GEMM needs for these sizes (a multiple of 64): one thread's workspace
    (:func:`_serial_workspace`) for the whole of C, or for each thread for its largest chunk."""
    cfg = config or default_config(dtype, host_vector_bits())
    if min(m, n, k, batch) <= 0:
        return 0
    grid = partition(m, n, k, batch, cfg, threads, global_tiles)
    if grid is None:
        return _serial_workspace(m, n, k, cfg, trans_c)
    return threads * chunk_workspace(grid, k, cfg, trans_c)


def chunk_workspace(grid: Grid, k: int, cfg: GemmConfig, trans_c: bool = False) -> int:
    """One thread's workspace for any chunk of ``grid`` (the blocking of a narrower last slice may need more)."""
    return max(_serial_workspace(rows, cols, k, cfg, trans_c) for rows, cols in grid.shapes())
