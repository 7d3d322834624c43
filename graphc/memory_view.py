"""The memory plan as a timeline: ``prog.render_memory(path)``.

x is the kernel order (the schedule's positions; the last column, "after", is the runtime reading the outputs and
update values once every kernel ran), y the arena offset. Each arena value is one rectangle from the kernel that
writes it to the last kernel that reads it, as tall as its bytes, coloured by its part of the step (forward,
backward, optimizer update). A value that took over its donor's buffer in place is hatched and starts in the
middle of the handover kernel, where its donor's rectangle ends: the two join at the same offset. The title gives
the naive size (every value its own buffer) and the planned arena.

:func:`memory_boxes` returns the rectangles drawn (the data the tests check against the Plan); the figure is
drawn with matplotlib (the optional extra ``pip install 'graphc[plot]'``), imported on first use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from graphc.dump import plan_of
from graphc.ir import topo_ancestors
from graphc.pictures import node_kinds
from passes.plan import Plan, align, intervals

COLOURS = {"forward": "#4f81bd", "backward": "#e07b39", "update": "#5aa469"}
LABELS = {"forward": "forward", "backward": "backward (gradients)", "update": "optimizer update"}


@dataclass(frozen=True)
class BufferBox:
    """One arena value's rectangle: live from kernel ``start`` to kernel ``end`` (inclusive; ``end`` equal to the
    number of kernels: read after the last one), at ``offset`` for ``nbytes`` bytes; ``reuses``: the value whose
    buffer it took over in place (None when it has its own); ``handed_over``: another value takes over this
    buffer in place at its last kernel."""

    name: str
    op: str
    kind: str
    start: int
    end: int
    offset: int
    nbytes: int
    reuses: str | None = None
    handed_over: bool = False

    @property
    def x(self) -> tuple[float, float]:
        """Left and right edges drawn: an in-place handover splits its kernel's column between donor and taker."""
        return (self.start + 0.5 if self.reuses else float(self.start), self.end + (0.5 if self.handed_over else 1.0))


def memory_boxes(plan: Plan, trainable: set[str] = frozenset()) -> list[BufferBox]:
    """The rectangles of every arena value with bytes, in schedule order of their writes (an update written in
    place into ``graph.state``, ``plan.state_inplace``, has no arena bytes)."""
    live = intervals(plan.kernels, plan.kept)
    kinds = node_kinds(topo_ancestors(plan.outputs + [v for _, v in plan.updates]), plan.outputs, trainable)
    donors = set(plan.inplace.values())
    boxes = []
    for v, (start, end) in sorted(live.items(), key=lambda item: (item[1][0], item[0].id)):
        if v.type.nbytes == 0 or v not in plan.buffers:
            continue
        donor = plan.inplace.get(v)
        boxes.append(BufferBox(v.name, v.op, kinds.get(v, "backward" if v.backward else "forward"), start, end,
                               plan.buffers[v].offset, v.type.nbytes, None if donor is None else donor.name,
                               v in donors))
    return boxes


def naive_bytes(plan: Plan) -> int:
    """Every arena value in its own 64-byte-aligned buffer (the memory plan report's naive size)."""
    return sum(align(v.type.nbytes) for v in intervals(plan.kernels, plan.kept) if v in plan.buffers)


def _size(nbytes: float) -> str:
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{int(nbytes)} B"


def memory_title(plan: Plan, boxes: list[BufferBox]) -> str:
    naive = naive_bytes(plan)
    saved = 100.0 * (naive - plan.arena_bytes) / naive if naive else 0.0
    reused = sum(1 for b in boxes if b.reuses)
    return (f"{plan.graph.name}: memory plan, naive {_size(naive)} -> planned {_size(plan.arena_bytes)} "
            f"({saved:.0f}% saved)\n{len(plan.kernels)} kernels, {len(boxes)} buffers, {reused} in-place reuses")


def memory_figure(program: Any) -> Any:
    """The matplotlib Figure of ``program``'s memory plan (see the module docstring)."""
    from graphc.nn.plots import matplotlib_figure

    plan = plan_of(program)
    boxes = memory_boxes(plan, set(program.graph.trainable))
    figure = matplotlib_figure(10.0, 5.5)
    from matplotlib.patches import Patch, Rectangle  # (after matplotlib_figure: its one-line error when missing)

    ax = figure.subplots()
    unit, scale = next(((u, f) for u, f in (("MiB", 2**20), ("KiB", 2**10)) if plan.arena_bytes >= 4 * f), ("B", 1))
    steps = len(plan.kernels)
    for b in boxes:
        left, right = b.x
        ax.add_patch(Rectangle((left, b.offset / scale), right - left, b.nbytes / scale, facecolor=COLOURS[b.kind],
                               alpha=0.85, edgecolor="black", linewidth=0.5, hatch="////" if b.reuses else None))
        if (right - left) >= 0.06 * (steps + 1) and b.nbytes >= 0.05 * max(plan.arena_bytes, 1):
            ax.text((left + right) / 2, (b.offset + b.nbytes / 2) / scale, b.name, ha="center", va="center",
                    fontsize=7, clip_on=True)
    ax.set_xlim(0, steps + 1)
    ax.set_ylim(0, max(plan.arena_bytes, 1) / scale)
    ticks = list(range(0, steps, max(1, steps // 20)))
    ax.set_xticks([t + 0.5 for t in ticks] + [steps + 0.5], [str(t) for t in ticks] + ["after"], fontsize=8)
    ax.set_xticks(range(steps + 2), minor=True)
    ax.tick_params(axis="x", which="minor", length=0)
    ax.grid(True, axis="x", which="minor", alpha=0.25)
    ax.set_xlabel("kernel (schedule order; each column one kernel)")
    ax.set_ylabel(f"arena offset ({unit})")
    ax.set_title(memory_title(plan, boxes), fontsize=10)
    handles = [Patch(facecolor=COLOURS[k], label=LABELS[k]) for k in COLOURS if any(b.kind == k for b in boxes)]
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="////", label="in place (takes the buffer "
                                                                                   "on its left)"))
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure


def render_memory(program: Any, path: str | os.PathLike[str] | None = None) -> Any:
    """The memory timeline of ``program``: the matplotlib Figure when ``path`` is None, else the path written
    (format from the extension: ``.svg``, ``.png``, ``.pdf``, ...)."""
    from graphc.nn.plots import _save

    figure = memory_figure(program)
    if path is None:
        return figure
    import matplotlib

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "graphc"}):  # text as text: small SVGs
        return _save(figure, path)


__all__ = ["BufferBox", "memory_boxes", "memory_figure", "naive_bytes", "render_memory"]
