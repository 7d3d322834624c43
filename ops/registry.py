"""The op registry and ``apply``, the one way a non-leaf node is built.

``apply`` finds the graph of the tensor operands, promotes Python scalars and arrays to constants of the
operands' dtype, normalizes attributes, infers the result type and records the user's creation site. Every
inference failure becomes a :class:`ShapeError` that names the op, the operand types and the user's line.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graphc.ir import GraphcError, Node, ShapeError, TensorType, creation_site, current_name_scope
from ops.base import Op, OpError

REGISTRY: dict[str, Op] = {}


class UnknownOpError(GraphcError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def register(cls: type[Op]) -> type[Op]:
    """Class decorator: instantiate the op and register it under ``cls.name``."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    if cls.name in REGISTRY:
        raise TypeError(f"op {cls.name!r} registered twice ({cls.__name__} and {type(REGISTRY[cls.name]).__name__})")
    REGISTRY[cls.name] = cls()
    return cls


def get_op(name: str) -> Op:
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise UnknownOpError(f"unknown op {name!r}; registered ops: {known}") from None


def _graph_of(op: str, operands: tuple[Any, ...]):
    graphs = {id(x.graph): x.graph for x in operands if isinstance(x, Node)}
    if not graphs:
        raise ShapeError(f"{op}: needs at least one graphc tensor operand (got only constants)\n  at {creation_site()}")
    if len(graphs) > 1:
        names = ", ".join(repr(g.name) for g in graphs.values())
        raise ShapeError(f"{op}: operands come from different graphs ({names})\n  at {creation_site()}")
    return next(iter(graphs.values()))


def _promote(graph, value: Any, peers: list[Node], op: Op, position: int) -> Node:
    """A Python scalar or array becomes a const of the peers' dtype (the tensor operands decide).

    Float peers win over integer ones; bool peers only decide for bool values (``where(c, 1.0, 0.0)`` gives
    float32 constants, not bools); ``op.promote_dtype`` may pick the dtype itself (integer class labels).
    """
    if isinstance(value, Node):
        return value
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise ShapeError(f"{op.name}: cannot use a value of type {type(value).__name__} as a tensor\n"
                         f"  at {creation_site()}")
    chosen = op.promote_dtype(position, array, tuple(p.type for p in peers))
    if chosen is not None:
        return graph.const(array, dtype=chosen)
    float_peers = [p for p in peers if p.type.is_float]
    int_peers = [p for p in peers if p.dtype == "int64"]
    bool_peers = [p for p in peers if p.dtype == "bool"] if array.dtype.kind == "b" else []
    candidates = float_peers or int_peers or bool_peers
    target = candidates[0].dtype if candidates else None
    if target is None:
        return graph.const(array)
    if not np.can_cast(array.dtype, target, "same_kind") and not (array.ndim == 0 and _fits(array, target)):
        raise ShapeError(f"{op.name}: a {array.dtype} constant cannot be combined with {target} tensors without a "
                         f"lossy cast\n  at {creation_site()}")
    return graph.const(array, dtype=target)


def _fits(scalar: np.ndarray, dtype: str) -> bool:
    """A Python scalar fits a dtype when converting it loses nothing (2.0 → int64 is fine, 2.5 is not)."""
    converted = scalar.astype(dtype)
    return bool(converted.astype(scalar.dtype) == scalar)


def _without_site(err: Exception) -> str:
    """The message of ``err`` without a trailing ``at file:line`` (the wrapping error adds the user's line)."""
    return str(err).split("\n  at ")[0]


def _naming(name: str | None) -> str:
    """How an error names the node being built: `` as 'scope/name'``, `` in scope 'scope'`` or nothing."""
    scope = current_name_scope()
    if isinstance(name, str) and name:
        return f" as {(scope + '/' if scope else '') + name!r}"
    return f" in scope {scope!r}" if scope else ""


def apply(op_name: str, *operands: Any, name: str | None = None, **attrs: Any) -> Node:
    """Build the node ``op_name(*operands, **attrs)`` in the operands' graph."""
    op = get_op(op_name)
    graph = _graph_of(op_name, operands)
    peers = [x for x in operands if isinstance(x, Node)]
    inputs = tuple(_promote(graph, x, peers, op, i) for i, x in enumerate(operands))
    if op.arity is not None and len(inputs) != op.arity:
        raise ShapeError(f"{op_name}: takes {op.arity} operands, got {len(inputs)}\n  at {creation_site()}")
    types = tuple(x.type for x in inputs)
    try:
        normalized = op.normalize(attrs, *types)
        out_type = op.infer(normalized, *types)
    except (OpError, ShapeError) as err:  # ShapeError: an invalid TensorType built during inference
        shown = ", ".join(str(t) for t in types)
        raise ShapeError(f"{op_name}({shown}){_naming(name)}: {_without_site(err)}\n  at {creation_site()}") from None
    except (TypeError, ValueError, ArithmeticError, MemoryError) as err:  # an attribute of the wrong kind or size
        shown = ", ".join(str(t) for t in types)
        raise ShapeError(f"{op_name}({shown}){_naming(name)}: invalid attributes {dict(attrs)!r}: "
                         f"{type(err).__name__}: {err}\n  at {creation_site()}") from None
    if not isinstance(out_type, TensorType):
        raise TypeError(f"{op_name}.infer returned {out_type!r}, not a TensorType")
    return graph.add_node(op_name, inputs, normalized, out_type, name=name)
