"""Weight penalties, Keras convention (no ½ factor):  l2 = λ·Σ p²,  l1 = λ·Σ |p|.

Two forms each:
- ``gc.l2(params, lam)`` → the scalar penalty over a tensor, a list/tuple of tensors or a dict of them
  (e.g. ``graph.params``; int params such as counters are skipped), to add to a loss;
- ``gc.l2(lam)`` → a :class:`Regularizer`, callable on one tensor, for layers
  (``Dense(kernel_regularizer=gc.l2(1e-5))``).

A :class:`Regularizer` round-trips through ``get_config()`` / :meth:`Regularizer.from_config` (a saved model keeps
its penalties); :func:`get` turns ``None``, a regularizer, its config dict or any callable into what layers hold,
and :func:`serialize` turns it back into JSON (a clear error for a custom callable, which cannot be saved).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from graphc.ir import GraphcError, Node
from ops import fn


class Regularizer:
    """A penalty λ·Σ f(p) with f = ``p²`` (kind ``"l2"``) or ``|p|`` (kind ``"l1"``); call it on a tensor."""

    def __init__(self, kind: str, lam: float) -> None:
        if kind not in ("l1", "l2"):
            raise GraphcError(f"unknown regularizer kind {kind!r}; use 'l1' or 'l2'")
        lam = float(lam)
        if not (lam >= 0 and math.isfinite(lam)):
            raise GraphcError(f"{kind}: the factor must be a finite non-negative number, got {lam}")
        self.kind, self.lam = kind, lam

    def __call__(self, x: Node) -> Node:
        if not isinstance(x, Node):
            raise GraphcError(f"{self.kind}: expected a graphc tensor, got {type(x).__name__}")
        term = fn.mul(x, x) if self.kind == "l2" else fn.abs(x)
        return fn.mul(fn.sum(term), self.lam)

    def get_config(self) -> dict[str, Any]:
        return {"kind": self.kind, "lam": self.lam}

    @classmethod
    def from_config(cls, config: Any) -> Regularizer:
        """The regularizer ``get_config()`` described: exactly ``{"kind": "l1" | "l2", "lam": number >= 0}``."""
        if not isinstance(config, Mapping) or set(config) != {"kind", "lam"}:
            raise GraphcError(f"a regularizer config is {{'kind': 'l1' | 'l2', 'lam': number}}, got {config!r}")
        kind, lam = config["kind"], config["lam"]
        if not isinstance(kind, str) or isinstance(lam, bool) or not isinstance(lam, (int, float)):
            raise GraphcError(f"a regularizer config is {{'kind': 'l1' | 'l2', 'lam': number}}, got {config!r}")
        return cls(kind, lam)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Regularizer) and (self.kind, self.lam) == (other.kind, other.lam)

    def __hash__(self) -> int:
        return hash((self.kind, self.lam))

    def __repr__(self) -> str:
        return f"gc.{self.kind}({self.lam:g})"


def _penalty(kind: str, params: Any, lam: float | None) -> Node | Regularizer:
    if lam is None:
        if isinstance(params, (int, float)) and not isinstance(params, bool):
            return Regularizer(kind, params)
        raise GraphcError(f"{kind}: call it as gc.{kind}(lam) for a regularizer or gc.{kind}(params, lam) for a "
                          f"penalty; got gc.{kind}({params!r})")
    if isinstance(params, Node):
        tensors = [params]
    elif isinstance(params, Mapping):
        tensors = list(params.values())
    elif isinstance(params, (list, tuple)):
        tensors = list(params)
    else:
        raise GraphcError(f"{kind}: params must be a tensor, a list of tensors or a dict of them, "
                          f"got {type(params).__name__}")
    bad = [t for t in tensors if not isinstance(t, Node)]
    if bad:
        raise GraphcError(f"{kind}: params must be graphc tensors, got a {type(bad[0]).__name__}")
    tensors = [t for t in tensors if t.type.is_float]
    if not tensors:
        raise GraphcError(f"{kind}: no floating-point tensors to penalize")
    reg = Regularizer(kind, lam)
    total = reg(tensors[0])
    for t in tensors[1:]:
        total = fn.add(total, reg(t))
    return total


def l2(params: Any, lam: float | None = None) -> Node | Regularizer:
    """λ·Σ p² summed over ``params`` (a scalar tensor); ``l2(lam)`` alone gives a :class:`Regularizer`."""
    return _penalty("l2", params, lam)


def l1(params: Any, lam: float | None = None) -> Node | Regularizer:
    """λ·Σ |p| summed over ``params`` (a scalar tensor); ``l1(lam)`` alone gives a :class:`Regularizer`."""
    return _penalty("l1", params, lam)


def get(identifier: Any, where: str = "regularizer") -> Any:
    """What a layer holds for ``kernel_regularizer=...``: None, a :class:`Regularizer` (also from its config dict)
    or a custom callable (applied to the tensor, but not savable); ``where`` names the argument in errors."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, Mapping):
        try:
            return Regularizer.from_config(identifier)
        except GraphcError as err:
            raise GraphcError(f"{where}: {err}") from None
    if callable(identifier):
        return identifier
    raise GraphcError(f"{where} must be gc.l1(lam), gc.l2(lam), its config or a callable, got {identifier!r}")


def serialize(regularizer: Any, where: str = "regularizer") -> dict[str, Any] | None:
    """The JSON config of ``regularizer`` (None stays None); ``where`` names it in the error for a custom one."""
    if regularizer is None:
        return None
    if isinstance(regularizer, Regularizer):
        return regularizer.get_config()
    raise GraphcError(f"{where}: the custom regularizer {regularizer!r} cannot be saved; use gc.l1(lam) or "
                      "gc.l2(lam), or add its penalty to the loss yourself")
