"""Which algorithm a forward convolution runs: the rule of thumb, or the one measured fastest for its geometry.

Every forward conv2d has up to five algorithms that compute it (``codegen.conv``): "pointwise" (a 1×1 conv as a
GEMM on x itself), "implicit" (the GEMM packs its operand straight from the image), "indirect" (the transposed GEMM
reads its operand straight from a zero-padded image, no packing), "im2col" (explicit columns,
then the GEMM, in row blocks) and "direct" (loops over the taps; channel blocks for depthwise convs). For
``algorithm="auto"`` :func:`rule_of_thumb` picks one from the geometry alone. A program compiled with
``tune=True`` (``runtime.conv_tune``) instead times each of :func:`candidates` on this machine for every distinct
geometry and passes the winners in ``Plan.algorithms``, keyed by :func:`tuning_key`: the geometry, the dtype,
the thread count, the bias and whether the weights are constants (packed once at load). Kernels of equal
signature have equal keys, so shared kernel functions stay correct.
"""

from __future__ import annotations

from collections.abc import Mapping

import codegen.conv_direct as conv_direct
import codegen.conv_indirect as conv_indirect
import codegen.conv_pack as conv_pack
from codegen.conv_geometry import Geometry, geometry
from graphc.ir import Node

# "direct" is a candidate for one-group convs only up to this many taps per output (Cg·kh·kw): beyond it the taps
# loop is many times slower than a GEMM (no register blocking over output channels), not worth timing
DIRECT_CANDIDATE_TAPS = 4 * conv_direct.MAX_DIRECT_TAPS
INDIRECT_MIN_DEPTH = 256  # "auto" reads a stride-1 conv's image indirectly from this many taps per output


def rule_of_thumb(g: Geometry, requested: str) -> str:
    """``conv_direct.choose_algorithm``'s choice, except that im2col + GEMM becomes "indirect" for "auto" where
    :func:`prefers_indirect`, else "implicit" (no columns in scratch) for "auto" and when forced ("implicit")
    wherever the packer applies; a forced "indirect" where it applies (one group), else as "implicit". A forced
    "im2col" keeps the explicit columns."""
    if requested == "indirect" and conv_indirect.applies(g):
        return "indirect"
    if requested in ("implicit", "indirect"):
        return "implicit" if conv_pack.applies(g) else "im2col"
    if requested == "pointwise":  # the op checked the geometry (ops.conv)
        return "pointwise"
    algorithm = conv_direct.choose_algorithm(g, requested)
    if requested == "auto" and algorithm == "im2col" and prefers_indirect(g):
        return "indirect"
    if requested == "auto" and algorithm == "im2col" and conv_pack.applies(g):
        return "implicit"
    return algorithm


def prefers_indirect(g: Geometry) -> bool:
    """Whether "auto" runs the indirect GEMM rather than packing the image: for windows larger than 1×1 with at
    least ``INDIRECT_MIN_DEPTH`` taps per output, or a stride (which costs the packer a phase split). Its own
    cost is the transposed store of yᵀ into y, once per output element (measured when it was a separate pass
    over yᵀ), so it pays where each output sums many taps.
    Measured against the rule's previous choice (1 thread, frozen weights, medians of interleaved rounds):
    DenseNet's 128→32 growth convs 0.206 → 0.149 ms (14×14) and 0.70 → 0.60 ms (28×28), GoogLeNet's 5×5 0.241 →
    0.215, ResNet-50's 128-channel 3×3 stride 2 2.62 → 2.41, ResNet-18's 14×14 / 7×7 layers 4 / 7 % faster,
    its 56×56 / 28×28 layers and VGG's 112×112 within 1 %; slower on SqueezeNet's 16→64 3×3 (K = 144: 5–10 %)
    and ResNet-50's 1×1 stride-2 downsampling (2 %), which keep packing."""
    return (conv_indirect.applies(g) and g.kh * g.kw > 1
            and (g.kg >= INDIRECT_MIN_DEPTH or g.sh > 1 or g.sw > 1))


def candidates(g: Geometry) -> list[str]:
    """The algorithms that can compute this forward geometry, the rule of thumb's choice first."""
    found = [rule_of_thumb(g, "auto")]
    if g.pointwise:
        found.append("pointwise")
    if conv_pack.applies(g):
        found.append("implicit")
    if conv_indirect.applies(g):
        found.append("indirect")
    found.append("im2col")
    if g.groups > 1 or g.kg <= DIRECT_CANDIDATE_TAPS:
        found.append("direct")
    return list(dict.fromkeys(found))


def conv_geometry(node: Node) -> Geometry:
    """The geometry of a forward ``conv2d`` node."""
    x, w = node.inputs[:2]
    return geometry(x.shape, w.shape, node.shape, node.attrs, node.dtype)


def tunable(node: Node) -> bool:
    """Whether the tuner chooses this node's algorithm: a forward conv2d left to "auto"."""
    return node.op == "conv2d" and node.attrs.get("algorithm", "auto") == "auto" and node.size > 0


def tuning_key(node: Node, threads: int) -> str:
    """What a measured choice for ``node`` depends on (besides the machine: ``runtime.conv_tune`` keeps one table
    per CPU and LLVM)."""
    x, w = node.inputs[:2]
    a = node.attrs
    const = w.op == "const"
    return (f"{node.dtype} x{tuple(x.shape)} w{tuple(w.shape)} stride{tuple(a['stride'])} pad{tuple(a['padding'])} "
            f"dil{tuple(a['dilation'])} groups{a['groups']} bias{int(len(node.inputs) == 3)} const{int(const)} "
            f"threads{threads}")


def forward_algorithm(node: Node, g: Geometry, threads: int, tuned: Mapping[str, str]) -> str:
    """The algorithm ``node`` (a forward conv2d of geometry ``g``) runs: its forced ``algorithm`` attribute, else
    the measured choice in ``tuned`` when there is one that applies, else the rule of thumb."""
    requested = node.attrs.get("algorithm", "auto")
    if requested == "auto" and tuned:
        choice = tuned.get(tuning_key(node, threads))
        if choice is not None and choice in candidates(g):
            return choice
    return rule_of_thumb(g, requested)
