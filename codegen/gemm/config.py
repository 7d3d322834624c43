"""GEMM tile geometry: the register tile (``mr`` rows x ``nv`` vectors of ``vec`` lanes) and the cache blocks
(``kc`` deep, ``nc`` wide) chosen from the host's vector width."""

from __future__ import annotations

from dataclasses import dataclass

import llvmlite.ir as ir

from codegen.llvm import F32, F64, VOID
from codegen.target import has_avx512

SCALARS = {"float32": F32, "float64": F64}
ITEMSIZE = {"float32": 4, "float64": 8}
SCRATCH_BYTES = 512 * 1024  # stack scratch of one GEMM: packed B block + one packed A micro-panel (+ slack)


@dataclass(frozen=True)
class GemmConfig:
    """Tile geometry: ``mr`` rows x ``nv`` vectors of ``vec`` lanes per micro-tile; cache blocks ``kc``, ``nc``.

    ``nc`` is a multiple of ``nr``; the packed B block (``kc x nc``) and one A micro-panel (``mr x kc``) are the
    GEMM's scratch.
    """

    dtype: str
    vec: int
    mr: int
    nv: int
    kc: int
    nc: int

    @property
    def nr(self) -> int:
        return self.vec * self.nv

    @property
    def scalar(self) -> ir.Type:
        return SCALARS[self.dtype]

    @property
    def vector(self) -> ir.VectorType:
        return ir.VectorType(self.scalar, self.vec)

    @property
    def itemsize(self) -> int:
        return ITEMSIZE[self.dtype]


def default_config(dtype: str, vector_bits: int) -> GemmConfig:
    """Geometry for a vector ISA: 8 x 2 zmm (16 accumulators of 32 registers) with AVX-512, 6 x 2 ymm
    (12 accumulators of 16 registers) with AVX2. The ``mr x kc`` A micro-panel stays in L1 while the ``kc x nc``
    B block streams through from L2; ``nc`` fills the scratch budget because each column block repacks A
    (measured on Zen 3: ``nc`` ~500 is ~5% faster than ~250 at 1024³)."""
    if dtype not in SCALARS:
        raise ValueError(f"GEMM supports float32 and float64, not {dtype!r}")
    vec = max(vector_bits // (8 * ITEMSIZE[dtype]), 1)
    mr = 8 if vector_bits >= 512 else 6
    kc = 256 if dtype == "float32" else 128
    nr = 2 * vec
    budget = SCRATCH_BYTES // ITEMSIZE[dtype] - mr * kc - vec  # elements left for the packed B block
    nc = max(nr, budget // kc // nr * nr)
    return GemmConfig(dtype=dtype, vec=vec, mr=mr, nv=2, kc=kc, nc=nc)


def host_vector_bits() -> int:
    """Width of the host's widest vector registers that LLVM will use (512 with AVX-512F, else 256)."""
    return 512 if has_avx512() else 256


def helper_function(module: ir.Module, name: str, args: list[ir.Type], noalias: int,
                    small: bool = False) -> ir.Function:
    """An internal helper; ``small`` asks LLVM to optimize for size (packing loops whose hot paths are explicit
    vector code, so unrolling and runtime-checked vectorization would only add compile time)."""
    fn = ir.Function(module, ir.FunctionType(VOID, args), name=name)
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    fn.attributes.add("noinline")
    if small:
        fn.attributes.add("optsize")
    for arg in fn.args[:noalias]:
        arg.add_attribute("noalias")
    return fn


def shared_name(cfg: GemmConfig, what: str) -> str:
    """Module-level name of a helper shared by every GEMM of one geometry (``graphc.gemm.f32.8x2.uk6x16``)."""
    return f"graphc.gemm.{'f32' if cfg.dtype == 'float32' else 'f64'}.{cfg.vec}x{cfg.nv}.{what}"
