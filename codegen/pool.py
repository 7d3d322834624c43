"""Lowering of 2-D pooling: max / average pooling, their gradients, max_pool2d_gather, global average pooling.

Every output (plane, i, j) walks its window positions (p, q) in row-major order with runtime loops; a position
reads the input only when hi = i·sh + p·dh - top ∈ [0, H) and wi = j·sw + q·dw - left ∈ [0, W) (the load uses a
clamped index, so nothing outside x is ever touched, and the value is then replaced by the padding value).

- max: y = max over the window with padding -inf, NaN-propagating (``llvm.maximum``, as ``np.maximum``);
- argmax (gradient and gather): the first position whose value is strictly greater than the best so far (the
  first position is taken unconditionally, NaN never wins a comparison), exactly as the reference; its flat
  in-plane input index, or -1 when that position is padding (then the gradient is dropped / the gather gives 0);
- average: Σ over the valid positions (padding is zero) divided by the count of valid positions, or of positions
  inside the padded input with ``count_include_pad`` (positions only ceil mode adds never count);
- the gradients zero dx and scatter ``dx[pos] += ḡ`` (max) or ``dx[pos] += ḡ / count`` over the window (average);
- global average: the mean of each (n, c) plane, accumulated in float64.

On several threads the (n, c) planes run in chunks (size-only chunking): each chunk owns its planes of every
output, and every value is computed as on one thread, so results are the same bits for every thread count.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import llvmlite.ir as ir
import numpy as np

import codegen.loops as loops
import codegen.pool_blocks as pool_blocks
import codegen.pool_flat as pool_flat
import codegen.pool_rows as pool_rows
import codegen.pool_separable as pool_separable
from codegen.conv_geometry import zero_fill
from codegen.llvm import float_intrinsic, fold, for_range, i64
from codegen.lowering import KernelContext, lowerer
from codegen.scalar import F64, FAST, value_type
from graphc.ir import Node

Body = Callable[[KernelContext, ir.Value, ir.Value, ir.Value, ir.Value], None]  # (ctx, base, out, i, j)
PlaneStart = Callable[[KernelContext, ir.Value], None]
ROW_ARGMAX_MIN = 8  # interior columns per row for the row-wise argmax of the max-pool gradient
Interior = Callable[[KernelContext, ir.Value, ir.Value, ir.Value], None]  # (ctx, base, row out offset, i)


class Window:
    """Static pooling geometry of x (N, C, H, W) → (N, C, Ho, Wo) and the per-position index arithmetic."""

    def __init__(self, attrs, x_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> None:
        self.planes = x_shape[0] * x_shape[1]
        self.h, self.w = x_shape[2:]
        self.ho, self.wo = out_shape[2:]
        self.kh, self.kw = attrs["kernel_size"]
        self.sh, self.sw = attrs["stride"]
        self.dh, self.dw = attrs["dilation"]
        self.top, self.left, self.bottom, self.right = attrs["padding"]

    def interior(self) -> tuple[int, int, int, int]:
        """(i_lo, i_hi, j_lo, j_hi): the output rows and columns whose whole window lies inside x (no padding, no
        clamping), possibly empty."""

        def span(pad: int, size: int, k: int, d: int, s: int, out: int) -> tuple[int, int]:
            lo = min(-(-pad // s), out)  # i·s - pad >= 0
            last = size - 1 + pad - (k - 1) * d  # i·s <= last
            hi = last // s + 1 if last >= 0 else 0
            return lo, min(max(hi, lo), out)

        return (*span(self.top, self.h, self.kh, self.dh, self.sh, self.ho),
                *span(self.left, self.w, self.kw, self.dw, self.sw, self.wo))

    def outputs(self, ctx: KernelContext, body: Body, plane_start: PlaneStart | None = None,
                interior: Interior | None = None) -> None:
        """body(c, in-plane base offset, out offset, i, j) for every output element, planes in chunks on the
        program's threads (each chunk owns its planes of every output; ``plane_start(c, plane)`` runs first in
        each plane, e.g. to zero a gradient plane). With ``interior``, the outputs of :meth:`interior` are left to
        ``interior(c, base, row offset, i)``, called once per interior row (after the row's left border, before
        its right border), so that it can run simple loops along the row, which LLVM vectorizes."""
        window = max(self.kh * self.kw, 1)
        per = max(1, -(-loops.GRAIN // max(self.ho * self.wo * window, self.h * self.w, 1)))
        chunks = -(-self.planes // per)
        i_lo, i_hi, j_lo, j_hi = self.interior()
        if interior is None or i_lo == i_hi or j_lo == j_hi:
            interior, i_lo, i_hi = None, self.ho, self.ho

        def chunk(c: KernelContext, index: ir.Value) -> None:
            b = c.builder
            first = b.mul(index, i64(per))
            last = b.select(b.icmp_signed("<", b.add(first, i64(per)), i64(self.planes)), b.add(first, i64(per)),
                            i64(self.planes))
            with for_range(b, first, last, name="pl") as pl:
                if plane_start is not None:
                    plane_start(c, pl)
                base = b.mul(pl, i64(self.h * self.w))
                plane_out = b.mul(pl, i64(self.ho * self.wo))

                def elements(i: ir.Value, j0: int, j1: int) -> None:
                    with for_range(b, j0, j1, name="j") as j:
                        body(c, base, b.add(plane_out, b.add(b.mul(i, i64(self.wo)), j)), i, j)

                def border_rows(r0: int, r1: int) -> None:
                    if r0 < r1:
                        with for_range(b, r0, r1, name="i") as i:
                            elements(i, 0, self.wo)

                border_rows(0, i_lo)  # rows in order: a gradient's scatter adds in the same order everywhere
                if interior is not None:
                    with for_range(b, i_lo, i_hi, name="ii") as i:
                        elements(i, 0, j_lo)
                        interior(c, base, b.add(plane_out, b.mul(i, i64(self.wo))), i)
                        elements(i, j_hi, self.wo)
                border_rows(i_hi, self.ho)

        ctx.parallel("planes", chunks, chunk)

    def source(self, b: ir.IRBuilder, base: ir.Value, i: ir.Value, p: ir.Value, q: ir.Value) -> ir.Value:
        """In-plane offset (plus ``base``) of x at window position (p, q) of output (i, j = 0): add j·sw."""
        hi = b.sub(b.add(b.mul(i, i64(self.sh)), b.mul(p, i64(self.dh))), i64(self.top))
        return b.add(base, b.sub(b.add(b.mul(hi, i64(self.w)), b.mul(q, i64(self.dw))), i64(self.left)))

    def each_position(self, b: ir.IRBuilder, visit: Callable[[ir.Value, ir.Value], None]) -> None:
        """visit(p, q) for the window positions in row-major order."""
        with for_range(b, 0, self.kh, name="p") as p, for_range(b, 0, self.kw, name="q") as q:
            visit(p, q)

    def position(self, b: ir.IRBuilder, i: ir.Value, j: ir.Value, k: ir.Value
                 ) -> tuple[ir.Value, ir.Value, ir.Value, ir.Value]:
        """(hi, wi, inside x, in-plane index clamped to 0 when outside) of window position k = p·kw + q."""
        p, q = b.sdiv(k, i64(self.kw)), b.srem(k, i64(self.kw))
        hi = b.sub(b.add(b.mul(i, i64(self.sh)), b.mul(p, i64(self.dh))), i64(self.top))
        wi = b.sub(b.add(b.mul(j, i64(self.sw)), b.mul(q, i64(self.dw))), i64(self.left))
        ok = b.and_(b.and_(b.icmp_signed(">=", hi, i64(0)), b.icmp_signed("<", hi, i64(self.h))),
                    b.and_(b.icmp_signed(">=", wi, i64(0)), b.icmp_signed("<", wi, i64(self.w))))
        index = b.select(ok, b.add(b.mul(hi, i64(self.w)), wi), i64(0))
        return hi, wi, ok, index

    def argmax(self, ctx: KernelContext, x: Node, base: ir.Value, i: ir.Value, j: ir.Value) -> ir.Value:
        """In-plane index of the window's first maximum (padding is -inf), or -1 if that is a padding position."""
        b = ctx.builder
        ty = value_type(x.dtype)

        def step(b: ir.IRBuilder, k: ir.Value, accs: list[ir.Value]) -> list[ir.Value]:
            best, pos = accs
            _, _, ok, index = self.position(b, i, j, k)
            v = b.select(ok, b.load(ctx.elem(x, b.add(base, index))), ir.Constant(ty, -np.inf))
            better = b.or_(b.icmp_signed("==", k, i64(0)), b.fcmp_ordered(">", v, best))
            return [b.select(better, v, best), b.select(better, b.select(ok, index, i64(-1)), pos)]

        return fold(b, self.kh * self.kw, [ir.Constant(ty, -np.inf), i64(-1)], step, "am")[1]

    def count(self, b: ir.IRBuilder, i: ir.Value, j: ir.Value, include_pad: bool, ty: ir.Type) -> ir.Value:
        """The divisor of average pooling at output (i, j), as a float of type ``ty``."""

        def step(b: ir.IRBuilder, k: ir.Value, accs: list[ir.Value]) -> list[ir.Value]:
            hi, wi, ok, _ = self.position(b, i, j, k)
            if include_pad:
                ok = b.and_(b.and_(b.icmp_signed(">=", hi, i64(-self.top)),
                                   b.icmp_signed("<", hi, i64(self.h + self.bottom))),
                            b.and_(b.icmp_signed(">=", wi, i64(-self.left)),
                                   b.icmp_signed("<", wi, i64(self.w + self.right))))
            return [b.add(accs[0], b.zext(ok, i64(0).type))]

        return b.sitofp(fold(b, self.kh * self.kw, [i64(0)], step, "cnt")[0], ty)


def _node(ctx: KernelContext) -> Node:
    return ctx.kernel.nodes[0]


@lowerer("max_pool2d")
def lower_max_pool2d(ctx: KernelContext) -> None:
    """y = max over each window (padding -inf, NaN propagates)."""
    node = _node(ctx)
    x = node.inputs[0]
    win = Window(node.attrs, x.shape, node.shape)
    ty = value_type(node.dtype)

    def body(c: KernelContext, base: ir.Value, out: ir.Value, i: ir.Value, j: ir.Value) -> None:
        def step(b: ir.IRBuilder, k: ir.Value, accs: list[ir.Value]) -> list[ir.Value]:
            _, _, ok, index = win.position(b, i, j, k)
            v = b.select(ok, b.load(c.elem(x, b.add(base, index))), ir.Constant(ty, -np.inf))
            return [b.call(float_intrinsic(b, "llvm.maximum", ty, 2), [accs[0], v])]

        (best,) = fold(c.builder, win.kh * win.kw, [ir.Constant(ty, -np.inf)], step, "mx")
        c.builder.store(best, c.elem(node, out))

    def interior(c: KernelContext, base: ir.Value, row: ir.Value, i: ir.Value) -> None:
        """y[i, j] over the interior columns: y = -inf, then y = max(y, x[window position]) position by position,
        each a simple (vectorizable) loop along the row."""
        b = c.builder
        _, _, j_lo, j_hi = win.interior()
        with for_range(b, j_lo, j_hi, name="init") as j:
            b.store(ir.Constant(ty, -np.inf), c.elem(node, b.add(row, j)))

        def visit(p: ir.Value, q: ir.Value) -> None:
            src = win.source(b, base, i, p, q)
            with for_range(b, j_lo, j_hi, name="jv") as j:
                ptr = c.elem(node, b.add(row, j))
                v = b.load(c.elem(x, b.add(src, b.mul(j, i64(win.sw)))))
                b.store(b.call(float_intrinsic(b, "llvm.maximum", ty, 2), [b.load(ptr), v]), ptr)

        win.each_position(b, visit)

    blocks = pool_blocks.geometry(win, x.shape, np.dtype(node.dtype).itemsize)
    if node.size and pool_separable.applies(win):
        pool_separable.max_pool(ctx, node, win)
    elif node.size and pool_rows.applies(win, np.dtype(node.dtype).itemsize):
        pool_rows.max_pool(ctx, node, win)
    elif node.size and pool_blocks.applies(blocks):
        pool_blocks.max_pool(ctx, node, blocks)
    elif node.size and pool_flat.applies(win, np.dtype(node.dtype).itemsize):
        pool_flat.max_pool(ctx, node, win)
    elif node.size:
        win.outputs(ctx, body, interior=interior)


def _zero_plane(node: Node, win: Window) -> PlaneStart:
    """A plane prologue zeroing the gradient plane (N·C planes of H·W) before its windows scatter into it."""
    return lambda c, pl: zero_fill(c.builder, c.elem(node, c.builder.mul(pl, i64(win.h * win.w))), win.h * win.w)


@lowerer("max_pool2d_backward")
def lower_max_pool2d_backward(ctx: KernelContext) -> None:
    """dx[argmax(window)] += ḡ[window] (gradients landing on padding are dropped)."""
    node = _node(ctx)
    x, g = node.inputs
    win = Window(node.attrs, x.shape, g.shape)
    if not g.size:
        zero_fill(ctx.builder, ctx.ptr(node), node.size)
        return

    def body(c: KernelContext, base: ir.Value, out: ir.Value, i: ir.Value, j: ir.Value) -> None:
        b = c.builder
        pos = win.argmax(c, x, base, i, j)
        with b.if_then(b.icmp_signed(">=", pos, i64(0))):
            ptr = c.elem(node, b.add(base, pos))
            b.store(b.fadd(b.load(ptr), b.load(c.elem(g, out))), ptr)

    ty = value_type(x.dtype)

    def interior(c: KernelContext, base: ir.Value, row: ir.Value, i: ir.Value) -> None:
        """The argmax of every interior window along the row at once — best value and position in row-long
        scratch, updated position by position (first position taken, then strictly greater, as ``argmax``) —
        then the scatter dx[pos] += ḡ in column order."""
        b = c.builder
        _, _, j_lo, j_hi = win.interior()
        best = c.scratch(win.wo * np.dtype(x.dtype).itemsize, ty)
        pos = c.scratch(win.wo * 8, i64(0).type)
        first = win.source(b, base, i, i64(0), i64(0))
        with for_range(b, j_lo, j_hi, name="init") as j:
            at = b.add(first, b.mul(j, i64(win.sw)))
            b.store(b.load(c.elem(x, at)), b.gep(best, [j], inbounds=True))
            b.store(b.sub(at, base), b.gep(pos, [j], inbounds=True))

        def visit(p: ir.Value, q: ir.Value) -> None:
            src = win.source(b, base, i, p, q)
            with for_range(b, j_lo, j_hi, name="jv") as j:
                at = b.add(src, b.mul(j, i64(win.sw)))
                v = b.load(c.elem(x, at))
                best_ptr, pos_ptr = b.gep(best, [j], inbounds=True), b.gep(pos, [j], inbounds=True)
                old = b.load(best_ptr)
                better = b.fcmp_ordered(">", v, old)
                b.store(b.select(better, v, old), best_ptr)
                b.store(b.select(better, b.sub(at, base), b.load(pos_ptr)), pos_ptr)

        win.each_position(b, visit)
        with for_range(b, j_lo, j_hi, name="scatter") as j:
            ptr = c.elem(node, b.add(base, b.load(b.gep(pos, [j], inbounds=True))))
            b.store(b.fadd(b.load(ptr), b.load(c.elem(g, b.add(row, j)))), ptr)

    _, _, j_lo, j_hi = win.interior()
    wide = j_hi - j_lo >= ROW_ARGMAX_MIN  # short rows: the register argmax per window is faster (measured)
    win.outputs(ctx, body, _zero_plane(node, win), interior=interior if wide else None)


@lowerer("max_pool2d_gather")
def lower_max_pool2d_gather(ctx: KernelContext) -> None:
    """y[window] = h[argmax(window)] (0 when the first maximum is a padding position)."""
    node = _node(ctx)
    x, h = node.inputs
    win = Window(node.attrs, x.shape, node.shape)
    zero = ir.Constant(value_type(node.dtype), 0.0)

    def body(c: KernelContext, base: ir.Value, out: ir.Value, i: ir.Value, j: ir.Value) -> None:
        b = c.builder
        pos = win.argmax(c, x, base, i, j)
        ok = b.icmp_signed(">=", pos, i64(0))
        v = b.load(c.elem(h, b.add(base, b.select(ok, pos, i64(0)))))
        b.store(b.select(ok, v, zero), c.elem(node, out))

    if node.size:
        win.outputs(ctx, body)


@lowerer("avg_pool2d")
def lower_avg_pool2d(ctx: KernelContext) -> None:
    """y = Σ window (zero padding) / count, summed in window order as the reference."""
    node = _node(ctx)
    x = node.inputs[0]
    win = Window(node.attrs, x.shape, node.shape)
    ty = value_type(node.dtype)
    include = node.attrs["count_include_pad"]

    def body(c: KernelContext, base: ir.Value, out: ir.Value, i: ir.Value, j: ir.Value) -> None:
        b = c.builder

        def step(b: ir.IRBuilder, k: ir.Value, accs: list[ir.Value]) -> list[ir.Value]:
            _, _, ok, index = win.position(b, i, j, k)
            v = b.select(ok, b.load(c.elem(x, b.add(base, index))), ir.Constant(ty, 0.0))
            return [b.fadd(accs[0], v)]

        (total,) = fold(b, win.kh * win.kw, [ir.Constant(ty, 0.0)], step, "avg")
        b.store(b.fdiv(total, win.count(b, i, j, include, ty)), c.elem(node, out))

    def interior(c: KernelContext, base: ir.Value, row: ir.Value, i: ir.Value) -> None:
        """The same sums (0 + v₀ + v₁ + ... in window order, then / kh·kw) over the interior columns, position by
        position along the row."""
        b = c.builder
        _, _, j_lo, j_hi = win.interior()
        with for_range(b, j_lo, j_hi, name="init") as j:
            b.store(ir.Constant(ty, 0.0), c.elem(node, b.add(row, j)))

        def visit(p: ir.Value, q: ir.Value) -> None:
            src = win.source(b, base, i, p, q)
            with for_range(b, j_lo, j_hi, name="jv") as j:
                ptr = c.elem(node, b.add(row, j))
                b.store(b.fadd(b.load(ptr), b.load(c.elem(x, b.add(src, b.mul(j, i64(win.sw)))))), ptr)

        win.each_position(b, visit)
        count = ir.Constant(ty, float(win.kh * win.kw))  # the whole window is inside x
        with for_range(b, j_lo, j_hi, name="div") as j:
            ptr = c.elem(node, b.add(row, j))
            b.store(b.fdiv(b.load(ptr), count), ptr)

    if node.size:
        win.outputs(ctx, body, interior=interior)


@lowerer("avg_pool2d_backward")
def lower_avg_pool2d_backward(ctx: KernelContext) -> None:
    """dx[valid window positions] += ḡ / count."""
    node = _node(ctx)
    g = node.inputs[0]
    win = Window(node.attrs, node.shape, g.shape)
    include = node.attrs["count_include_pad"]
    if not g.size:
        zero_fill(ctx.builder, ctx.ptr(node), node.size)
        return

    def body(c: KernelContext, base: ir.Value, out: ir.Value, i: ir.Value, j: ir.Value) -> None:
        b = c.builder
        share = b.fdiv(b.load(c.elem(g, out)), win.count(b, i, j, include, value_type(node.dtype)))

        def step(b: ir.IRBuilder, k: ir.Value, accs: list[ir.Value]) -> list[ir.Value]:
            _, _, ok, index = win.position(b, i, j, k)
            with b.if_then(ok):
                ptr = c.elem(node, b.add(base, index))
                b.store(b.fadd(b.load(ptr), share), ptr)
            return accs

        fold(b, win.kh * win.kw, [], step, "spread")

    win.outputs(ctx, body, _zero_plane(node, win))


@lowerer("global_avg_pool2d")
def lower_global_avg_pool2d(ctx: KernelContext) -> None:
    """y[n, c] = (Σ x[n, c, ...]) / S over the S spatial elements (float64 accumulation; 0/0 = nan)."""
    node = _node(ctx)
    x = node.inputs[0]
    planes = x.shape[0] * x.shape[1]
    spatial = math.prod(x.shape[2:])
    ty = value_type(node.dtype)
    if planes == 0:
        return
    per = max(1, -(-loops.GRAIN // max(spatial, 1)))

    def chunk(c: KernelContext, index: ir.Value) -> None:
        b = c.builder
        first = b.mul(index, i64(per))
        last = b.select(b.icmp_signed("<", b.add(first, i64(per)), i64(planes)), b.add(first, i64(per)),
                        i64(planes))
        with for_range(b, first, last, name="pl") as pl:
            total = ir.Constant(F64, 0.0)
            if spatial:
                def step(b: ir.IRBuilder, e: ir.Value, accs: list[ir.Value]) -> list[ir.Value]:
                    v = b.load(c.elem(x, b.add(b.mul(pl, i64(spatial)), e)))
                    return [b.fadd(accs[0], v if ty == F64 else b.fpext(v, F64), flags=FAST)]

                (total,) = fold(b, spatial, [total], step, "gap")
            mean = b.fdiv(total, ir.Constant(F64, float(spatial)))
            b.store(mean if ty == F64 else b.fptrunc(mean, ty), c.elem(node, pl))

    ctx.parallel("planes", -(-planes // per), chunk)
