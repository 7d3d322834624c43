"""``gc.grad`` and ``gc.compile``: the two entry points from a graph to numbers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from graphc.ir import Node
from passes import autodiff
from runtime import Program, make_program


def grad(y: Node, xs: Sequence[Node] | Node) -> list[Node] | Node:
    """Symbolic gradients dy/dx as new graph nodes (``y`` must be a scalar). A single x gives a single node."""
    if isinstance(xs, Node):
        return autodiff.grad(y, [xs])[0]
    return autodiff.grad(y, list(xs))


def compile(outputs: Any, backend: str | None = None, updates: Any = None, dump_dir: str | None = None,  # noqa: A001
            **options: Any) -> Program:
    """Compile ``outputs`` (a tensor, a dict name → tensor, or a list) into a callable :class:`Program`.

    ``updates`` maps params to their new values ({param: tensor} or [(param, tensor)]); a program call computes
    every output and update from the current state, then writes the updates into ``graph.state`` in place.
    ``dump_dir``: write every compiler stage there as text and DOT (see :mod:`graphc.dump`).
    ``freeze=True``: an inference program whose params are constant snapshots of their current values — batch
    norms after a conv/dense fold into its weights, constant subgraphs are evaluated once (``passes.freeze``);
    later changes to the params do not reach it. ``tune=True`` (llvm; default ``GRAPHC_TUNE=1``): every forward
    conv left to ``algorithm="auto"`` runs the algorithm measured fastest for its geometry on this machine
    (``runtime.conv_tune``: measured once per geometry, cached). Other ``options``: ``threads`` (all backends),
    ``cache`` (llvm).
    """
    program = make_program(outputs, backend=backend, updates=updates, **options)
    if dump_dir is not None:
        from graphc.dump import dump_program

        dump_program(program, dump_dir)
    return program
