"""Explain one tensor across the compiler's layers: ``prog.explain(tensor)``, ``graphc explain FILE[:NAME] NODE``.

The report is built by :mod:`runtime.explain` (it reads only the Plan, the provenance the passes recorded, the
autodiff origins and the native module, all below the user API); this module is its public face and adds
:func:`explain_target`, which compiles a target first when it is not a program yet.
"""

from __future__ import annotations

from typing import Any

from graphc.api import compile as compile_program
from graphc.ir import Node
from runtime import Program
from runtime.explain import Explanation, explain


def explain_target(target: Any, tensor: Node | str, backend: str | None = None) -> Explanation:
    """Explain ``tensor`` in ``target``: a compiled :class:`Program` (used as it is), or outputs (a tensor, a dict
    or list of tensors) compiled for ``backend`` first."""
    program = target if isinstance(target, Program) else compile_program(target, backend=backend)
    return explain(program, tensor)


__all__ = ["Explanation", "explain", "explain_target"]
