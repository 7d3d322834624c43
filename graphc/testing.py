"""Testing helpers for users: gradient checks against finite differences, backend agreement.

``check_grads`` copies the graph into float64 (inputs, params, constants and dtype attributes promoted), builds
the symbolic gradients there and compares them with central differences (f(x+h) - f(x-h)) / 2h, so a float32
model is checked without float32 rounding noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from graphc.api import compile as compile_program
from graphc.api import grad
from graphc.ir import FeedError, Graph, GraphcError, Node, topo_ancestors
from ops.registry import apply


def promote_to_float64(outputs: Sequence[Node]) -> tuple[Graph, dict[int, Node]]:
    """A float64 copy of everything ``outputs`` depend on; returns the new graph and old-id → new-node map."""
    graph = outputs[0].graph
    new = Graph(f"{graph.name}_float64")
    mapping: dict[int, Node] = {}

    def wider(dtype: str) -> str:
        return "float64" if dtype == "float32" else dtype

    for n in topo_ancestors(list(outputs)):
        if n.op == "input":
            copy = new.input(n.name, n.shape, wider(n.dtype))
        elif n.op == "param":
            copy = new.param(n.name, graph.state[n.name], dtype=wider(n.dtype))
        elif n.op == "const":
            copy = new.const(n.attrs["value"], dtype=wider(n.dtype), name=n.name)
        else:  # names are kept (unique in the source graph, so unique here) so reports match the user's graph
            attrs = {k: wider(v) if k == "dtype" and isinstance(v, str) else v for k, v in n.attrs.items()}
            copy = apply(n.op, *(mapping[x.id] for x in n.inputs), name=n.name, **attrs)
        mapping[n.id] = copy
    return new, mapping


def check_grads(y: Node, xs: Sequence[Node], feeds: Mapping[str, Any], eps: float = 1e-6, rtol: float = 1e-5,
                atol: float = 1e-6, max_elements: int = 4000, seed: int = 0) -> None:
    """Assert that gc.grad(y, xs) matches central finite differences in float64.

    ``xs`` must be inputs or params. Tensors with more than ``max_elements`` elements are checked on a random
    subset of that many elements. Raises ``AssertionError`` naming the worst element otherwise.
    """
    for x in xs:
        if x.op not in ("input", "param"):
            raise GraphcError(f"check_grads: {x.name!r} is a {x.op} node; finite differences need inputs or params")
    unknown = [k for k in feeds if k not in y.graph.inputs]
    if unknown:
        raise FeedError(f"check_grads: unknown feed {', '.join(map(repr, unknown))}; graph {y.graph.name!r} has "
                        f"inputs {', '.join(map(repr, y.graph.inputs)) or '(none)'}")
    graph64, mapping = promote_to_float64([y, *xs])
    y64, xs64 = mapping[y.id], [mapping[x.id] for x in xs]
    grads = grad(y64, xs64)
    analytic = compile_program(grads, backend="numpy")
    value = compile_program(y64, backend="numpy")
    feeds64 = {k: _widen(v) for k, v in feeds.items() if k in graph64.inputs}
    computed = analytic(**feeds64)
    rng = np.random.default_rng(seed)
    failures = []
    for x, g in zip(xs64, computed):
        target = feeds64[x.name] if x.op == "input" else graph64.state[x.name]
        target = np.asarray(target)
        if x.op == "input":
            feeds64[x.name] = target = np.array(target, dtype=np.float64, order="C")
        flat = target.reshape(-1)
        assert np.shares_memory(flat, target), "finite differences must perturb the array the program reads"
        indices = np.arange(flat.size)
        if flat.size > max_elements:
            indices = rng.choice(flat.size, max_elements, replace=False)
        numeric = np.empty(len(indices))
        for j, i in enumerate(indices):
            saved = flat[i]
            flat[i] = saved + eps
            plus = float(value(**feeds64))
            flat[i] = saved - eps
            minus = float(value(**feeds64))
            flat[i] = saved
            numeric[j] = (plus - minus) / (2 * eps)
        got = np.asarray(g).reshape(-1)[indices]
        err = np.abs(got - numeric) - (atol + rtol * np.abs(numeric))
        finite = np.isfinite(got) & np.isfinite(numeric)  # a NaN on either side is a failure, not a pass
        if np.any(err > 0) or not np.all(finite):
            worst = int(np.argmax(np.where(finite, err, np.inf)))
            where = np.unravel_index(indices[worst], x.shape) if x.shape else ()
            a, n = got[worst], numeric[worst]
            failures.append(f"d{y.name}/d{x.name} at index {tuple(int(i) for i in where)}: analytic {a:.8g}, "
                            f"finite difference {n:.8g} (abs error {abs(a - n):.3g}, "
                            f"allowed {atol + rtol * abs(n):.3g})")
    if failures:
        raise AssertionError("gradient check failed:\n  " + "\n  ".join(failures))


def _widen(value: Any) -> Any:
    array = np.asarray(value)
    return array.astype(np.float64) if array.dtype == np.float32 else array


def assert_backends_agree(outputs: Any, feeds: Mapping[str, Any], rtol: float = 1e-4, atol: float = 1e-5,
                          backends: tuple[str, str] = ("numpy", "llvm"), scale_atol: bool = False) -> None:
    """Compile ``outputs`` with two backends, run both on ``feeds`` and assert the results agree.

    Floating outputs agree within ``rtol``/``atol`` (with ``scale_atol``, ``atol`` is multiplied by
    max(1, max |reference output|), so large-magnitude outputs are held to float precision at their scale);
    integer and bool outputs must be equal. Shapes and dtypes must match. Programs with state updates are compared
    on the outputs only; state is not touched (no updates compiled).
    """
    results = [compile_program(outputs, backend=b)(**feeds) for b in backends]
    first, second = (r if isinstance(r, dict) else dict(enumerate(r if isinstance(r, list) else [r]))
                     for r in results)
    for key in first:
        a, b = np.asarray(first[key]), np.asarray(second[key])
        where = f"output {key!r}: {backends[1]} vs {backends[0]}"
        if a.shape != b.shape or a.dtype != b.dtype:
            raise AssertionError(f"output {key!r}: {backends[0]} gives {a.dtype}{list(a.shape)}, "
                                 f"{backends[1]} gives {b.dtype}{list(b.shape)}")
        if a.dtype.kind != "f":
            np.testing.assert_array_equal(b, a, err_msg=where)
            continue
        scale = max(1.0, float(np.max(np.abs(a), initial=0.0))) if scale_atol else 1.0
        np.testing.assert_allclose(b, a, rtol=rtol, atol=atol * scale, err_msg=where)
