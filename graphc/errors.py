"""graphc's errors and the user's line they name (part of the IR layer: ``graphc.ir`` re-exports all of it).

Every error graphc raises on purpose is a :class:`GraphcError`. Nodes record their :func:`creation_site`, the
innermost stack frame outside graphc's own packages, and an error's message ends with the user's calling line.
"""

from __future__ import annotations

import os
import sys
from typing import Any


class GraphcError(Exception):
    """Base class of every error graphc raises on purpose.

    Its message names the user's line: one that does not already end in ``at file:line`` gets the innermost
    calling line outside graphc appended (the line in the user's program that called graphc), unless that line is
    not the user's own (a command-line run, where the error names the user's file itself)."""

    def __init__(self, *args: Any) -> None:
        if args and isinstance(args[0], str) and "\n  at " not in args[0]:
            site = user_site()
            if site is not None:
                args = (f"{args[0]}\n  at {site}",) + args[1:]
        super().__init__(*args)


class ShapeError(GraphcError, ValueError):
    """An op was given operands whose shapes, dtypes or attributes it cannot accept."""


class GradientError(GraphcError):
    """A gradient was asked for that cannot be built (no VJP, non-scalar target, integer input)."""


class FeedError(GraphcError, ValueError):
    """A program was called with a missing, unknown or ill-shaped feed."""


_INTERNAL_DIRS = tuple(
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), pkg) + os.sep
    for pkg in ("graphc", "ops", "passes", "codegen", "runtime")
)


def creation_site() -> str:
    """``file:line`` of the innermost stack frame outside graphc's own packages (the user's line)."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        internal = filename.startswith(_INTERNAL_DIRS) or "importlib" in filename or filename.endswith(
            ("contextlib.py", "functools.py")
        )
        if not internal:
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "<graphc>"


_RUNTIME_DIRS = tuple(os.path.join(os.path.abspath(p), "") for p in {sys.prefix, sys.base_prefix, sys.exec_prefix})


def user_site() -> str | None:
    """The user's calling line as :func:`creation_site` finds it, or None when that frame is not user code (the
    Python installation itself: the ``graphc`` console script, ``runpy``, the standard library)."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        internal = filename.startswith(_INTERNAL_DIRS) or "importlib" in filename or filename.endswith(
            ("contextlib.py", "functools.py"))
        if not internal:
            if filename.startswith(_RUNTIME_DIRS) or frame.f_code.co_filename.startswith("<frozen"):
                return None
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return None
