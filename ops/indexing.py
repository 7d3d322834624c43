"""Indexing ops: slice (basic NumPy indexing by ints, slices, Ellipsis and None), its scatter-back
``slice_backward``, ``concat``, constant ``pad``, and ``check_index`` (the run-time guard of gathered indices and
class labels).

A ``slice`` index is a tuple of entries ``("slice", start, stop, step)``, ``("int", i)``, ``("ellipsis",)`` or
``("newaxis",)`` (what ``fn.getitem`` produces). ``normalize`` makes it explicit and idempotent: one entry per
input axis (plus newaxis entries), ints non-negative, slices with concrete non-negative ``start`` and ``step``
and ``stop`` either a non-negative int or None (None only for a negative step running past index 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np

import ops.fn as fn
from graphc.ir import TensorType
from ops.base import ErrorCase, Op, OpError, Sample, as_int, normalize_axis, same_dtype
from ops.registry import apply, register

Index = tuple[tuple[Any, ...], ...]


def normalize_index(index: Any, shape: tuple[int, ...]) -> Index:
    """The explicit canonical form of ``index`` for a tensor of ``shape`` (see the module docstring)."""
    if not isinstance(index, (tuple, list)):
        raise OpError(f"index must be a tuple of entries, got {index!r}")
    entries = [tuple(e) for e in index]
    kinds = [e[0] if e else None for e in entries]
    if any(k not in ("slice", "int", "ellipsis", "newaxis") for k in kinds):
        raise OpError(f"unknown index entry in {index!r}")
    if kinds.count("ellipsis") > 1:
        raise OpError("an index can only have a single ellipsis ('...')")
    consumed = sum(k in ("slice", "int") for k in kinds)
    if consumed > len(shape):
        raise OpError(f"too many indices ({consumed}) for a tensor of shape {shape}")
    fill = [("slice", None, None, None)] * (len(shape) - consumed)
    if "ellipsis" in kinds:
        at = kinds.index("ellipsis")
        entries = entries[:at] + fill + entries[at + 1:]
    else:
        entries = entries + fill
    out: list[tuple[Any, ...]] = []
    axis = 0
    for entry in entries:
        if entry[0] == "newaxis":
            out.append(("newaxis",))
            continue
        dim = shape[axis]
        if entry[0] == "int":
            i = int(entry[1])
            if not -dim <= i < dim:
                raise OpError(f"index {i} is out of bounds for axis {axis} of size {dim} (shape {shape})")
            out.append(("int", i % dim))
        else:
            _, start, stop, step = entry
            step = 1 if step is None else int(step)
            if step == 0:
                raise OpError(f"slice step cannot be zero (axis {axis})")
            s = slice(None if start is None else int(start), None if stop is None else int(stop), step)
            start, stop, step = s.indices(dim)
            out.append(("slice", start, None if stop < 0 else stop, step))
        axis += 1
    return tuple(out)


def index_layout(index: Index, offset: int, strides: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    """(offset, strides) of ``x[index]`` for x laid out with ``offset``/``strides`` (elements): an int index adds
    i·stride to the offset, ``start:stop:step`` adds start·stride and scales the stride by step, a new axis has
    stride 0."""
    out, axis = [], 0
    for entry in index:
        if entry[0] == "newaxis":
            out.append(0)
            continue
        offset += entry[1] * strides[axis]
        if entry[0] == "slice":
            out.append(entry[3] * strides[axis])
        axis += 1
    return offset, tuple(out)


def python_index(index: Index) -> tuple[Any, ...]:
    """A canonical index as a NumPy indexing tuple."""
    return tuple(slice(e[1], e[2], e[3]) if e[0] == "slice" else e[1] if e[0] == "int" else None for e in index)


def sliced_shape(index: Index, shape: tuple[int, ...]) -> tuple[int, ...]:
    out, axis = [], 0
    for e in index:
        if e[0] == "newaxis":
            out.append(1)
            continue
        if e[0] == "slice":
            out.append(len(range(*slice(e[1], e[2], e[3]).indices(shape[axis]))))
        axis += 1
    return tuple(out)


@register
class Slice(Op):
    """y = x[index] (basic indexing: ints, slices with any nonzero step, Ellipsis, newaxis);
    dx = slice_backward(g): g scattered into zeros of x's shape at the selected positions."""

    name = "slice"
    kind = "shape"
    arity = 1

    def normalize(self, attrs, x):
        return {"index": normalize_index(attrs["index"], x.shape)}

    def infer(self, attrs, x):
        return TensorType(sliced_shape(attrs["index"], x.shape), x.dtype)

    def reference(self, attrs, x):
        return np.array(x[python_index(attrs["index"])], dtype=x.dtype)

    def view_layout(self, node, offset, strides):
        """:func:`index_layout` (an empty result has no layout worth reading)."""
        return None if node.size == 0 else index_layout(node.attrs["index"], offset, strides)

    def vjp(self, node, g):
        return (apply("slice_backward", g, index=node.attrs["index"], shape=node.inputs[0].shape),)

    def samples(self, rng):
        x = rng.standard_normal((4, 5, 3))
        cases = [(slice(1, 3),), (Ellipsis, 1), (slice(None, None, 2), None, slice(-2, None)), (2, slice(4, 0, -2)),
                 (slice(None, None, -1), 0, 2), (slice(3, 1),)]
        return [Sample([x], {"index": fn._canonical_index(c)}) for c in cases]

    def error_cases(self):
        x = [((4, 5), "float32")]
        return [ErrorCase(x, {"index": (("int", 4),)}, "out of bounds for axis 0 of size 4"),
                ErrorCase(x, {"index": (("int", 0), ("int", 0), ("int", 0))}, "too many indices"),
                ErrorCase(x, {"index": (("slice", None, None, 0),)}, "step cannot be zero"),
                ErrorCase(x, {"index": (("ellipsis",), ("ellipsis",))}, "single ellipsis")]


@register
class SliceBackward(Op):
    """y = zeros(shape) with y[index] = g (the VJP of ``slice``);  dg = slice(gy, index)."""

    name = "slice_backward"
    kind = "shape"
    arity = 1

    def normalize(self, attrs, g):
        shape = tuple(as_int(d, "a dimension of the shape") for d in attrs["shape"])
        return {"index": normalize_index(attrs["index"], shape), "shape": shape}

    def infer(self, attrs, g):
        want = sliced_shape(attrs["index"], attrs["shape"])
        if g.shape != want:
            raise OpError(f"the gradient has shape {g.shape}, but the slice of {attrs['shape']} has shape {want}")
        return TensorType(attrs["shape"], g.dtype)

    def reference(self, attrs, g):
        out = np.zeros(attrs["shape"], dtype=g.dtype)
        out[python_index(attrs["index"])] = g
        return out

    def vjp(self, node, g):
        return (apply("slice", g, index=node.attrs["index"]),)

    def samples(self, rng):
        return [Sample([rng.standard_normal((2, 5, 3))], {"index": (("slice", 1, 3, 1),), "shape": (4, 5, 3)}),
                Sample([rng.standard_normal((2, 4))], {"index": (("slice", None, None, -2), ("int", 1)),
                                                       "shape": (4, 2, 4)})]

    def error_cases(self):
        return [ErrorCase([((3, 5), "float32")], {"index": (("slice", 1, 3, 1),), "shape": (4, 5)},
                          "the slice of (4, 5) has shape (2, 5)")]


@register
class Concat(Op):
    """y = concatenation of x₁ … xₖ along ``axis`` (same dtype, equal sizes elsewhere);
    dxᵢ = the slice of g along ``axis`` that xᵢ occupies."""

    name = "concat"
    kind = "shape"
    arity = None

    def normalize(self, attrs, *xs):
        if not xs:
            raise OpError("needs at least one tensor")
        if xs[0].ndim == 0:
            raise OpError("cannot concatenate scalars (shape ()); reshape them to (1,) first")
        return {"axis": normalize_axis(attrs.get("axis", 0), xs[0].ndim)}

    def infer(self, attrs, *xs):
        dtype = same_dtype(self.name, *xs)
        axis = attrs["axis"]
        first = xs[0].shape
        for x in xs[1:]:
            if x.ndim != len(first) or any(a != b for i, (a, b) in enumerate(zip(x.shape, first)) if i != axis):
                shown = ", ".join(str(t.shape) for t in xs)
                raise OpError(f"shapes {shown} differ outside the concatenation axis {axis}")
        size = sum(x.shape[axis] for x in xs)
        return TensorType(first[:axis] + (size,) + first[axis + 1:], dtype)

    def reference(self, attrs, *xs):
        return np.concatenate(xs, axis=attrs["axis"])

    def vjp(self, node, g):
        axis, offset, grads = node.attrs["axis"], 0, []
        for x in node.inputs:
            size = x.shape[axis]
            index = (("slice", None, None, None),) * axis + (("slice", offset, offset + size, 1),)
            grads.append(apply("slice", g, index=index))
            offset += size
        return tuple(grads)

    def samples(self, rng):
        return [Sample([rng.standard_normal((2, 3)), rng.standard_normal((4, 3))]),
                Sample([rng.standard_normal((2, 1, 4)), rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 2, 4))],
                       {"axis": 1}),
                Sample([rng.standard_normal((3, 2))], {"axis": -1})]

    def error_cases(self):
        return [ErrorCase([((2, 3), "float32"), ((2, 4), "float32")], {"axis": 0}, "differ outside"),
                ErrorCase([((2, 3), "float32"), ((2, 3), "float64")], {}, "different dtypes"),
                ErrorCase([((2, 3), "float32")], {"axis": 2}, "out of range")]


@register
class Pad(Op):
    """Constant padding: y has shape dᵢ + beforeᵢ + afterᵢ, x in the middle, ``value`` elsewhere;
    dx = the middle block of g."""

    name = "pad"
    kind = "shape"
    arity = 1

    def normalize(self, attrs, x):
        pads = attrs.get("pads", 0)
        if isinstance(pads, (int, np.integer)):
            pairs = ((int(pads), int(pads)),) * x.ndim
        else:
            try:
                pairs = tuple((as_int(b, "a pad"), as_int(a, "a pad")) for b, a in pads)
            except (TypeError, ValueError):
                raise OpError(f"pads must be an int or one (before, after) pair per axis, got {pads!r}") from None
        if len(pairs) != x.ndim:
            raise OpError(f"pads needs one (before, after) pair per axis of {x.shape}, got {len(pairs)}")
        if any(p < 0 for pair in pairs for p in pair):
            raise OpError(f"pads must be non-negative, got {pairs}")
        return {"pads": pairs, "value": float(attrs.get("value", 0.0))}

    def infer(self, attrs, x):
        return TensorType(tuple(d + b + a for d, (b, a) in zip(x.shape, attrs["pads"])), x.dtype)

    def reference(self, attrs, x):
        return np.pad(x, attrs["pads"], mode="constant", constant_values=attrs["value"]).astype(x.dtype)

    def vjp(self, node, g):
        x = node.inputs[0]
        index = tuple(("slice", b, b + d, 1) for d, (b, _) in zip(x.shape, node.attrs["pads"]))
        return (apply("slice", g, index=index),)

    def samples(self, rng):
        return [Sample([rng.standard_normal((2, 3))], {"pads": ((1, 0), (2, 1))}),
                Sample([rng.standard_normal((2, 1, 3, 3))], {"pads": ((0, 0), (0, 0), (1, 1), (1, 1)), "value": -1.5}),
                Sample([rng.standard_normal((4,))], {"pads": 2})]

    def error_cases(self):
        return [ErrorCase([((2, 3), "float32")], {"pads": ((1, 1),)}, "one (before, after) pair per axis"),
                ErrorCase([((2, 3), "float32")], {"pads": ((1, 1), (0, -1))}, "non-negative")]


@register
class CheckIndex(Op):
    """y = i, once every index is known to be valid: ``0 <= i < depth``, or ``-depth <= i < depth`` with
    ``negative`` (Python/ONNX indexing from the end), or ``i == ignore`` (a loss's ignore_index). An index outside is
    an error when the program runs — the interpreter raises, native code sets the status word — never a silent zero
    row downstream (``one_hot`` of an out-of-range index is all zeros). No gradient (integers)."""

    name = "check_index"
    kind = "opaque"  # its own loop: the check reports through the status word
    arity = 1
    inplace = True

    def normalize(self, attrs, x):
        ignore = attrs.get("ignore")
        return {"depth": as_int(attrs["depth"], "depth"), "negative": bool(attrs.get("negative", False)),
                "ignore": None if ignore is None else as_int(ignore, "ignore")}

    def infer(self, attrs, x):
        if x.dtype != "int64":
            raise OpError(f"indices must be int64, got {x}")
        if attrs["depth"] < 0:
            raise OpError(f"depth must be non-negative, got {attrs['depth']}")
        return x

    def valid_range(self, attrs) -> str:
        low = -attrs["depth"] if attrs["negative"] else 0
        allowed = f"[{low}, {attrs['depth']})"
        return allowed if attrs["ignore"] is None else f"{allowed} (or the ignore_index {attrs['ignore']})"

    def reference(self, attrs, x):
        low = -attrs["depth"] if attrs["negative"] else 0
        bad = (x < low) | (x >= attrs["depth"])
        if attrs["ignore"] is not None:
            bad &= x != attrs["ignore"]
        if np.any(bad):
            raise ValueError(f"index {int(x[bad].flat[0])} is outside {self.valid_range(attrs)}")
        return x.copy()

    def vjp(self, node, g):
        return (None,)

    def status_message(self, node):
        return f"an index is outside {self.valid_range(node.attrs)}"

    def samples(self, rng):
        return [Sample([rng.integers(0, 5, (4, 3))], {"depth": 5}),
                Sample([rng.integers(-5, 5, (7,))], {"depth": 5, "negative": True}),
                Sample([np.array([0, -100, 2, -100])], {"depth": 3, "ignore": -100})]

    def error_cases(self):
        return [ErrorCase([((3,), "float32")], {"depth": 3}, "int64"),
                ErrorCase([((3,), "int64")], {"depth": -1}, "non-negative")]
