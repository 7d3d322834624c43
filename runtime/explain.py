"""``prog.explain(tensor)``: one user tensor followed through every layer of the compiler.

The report (an :class:`Explanation`; ``str()`` is the text, and it displays itself in a REPL or notebook) says:

- **tensor**: name, op, type, creation site, whether it is a program output or an update value;
- **gradient** (backward nodes): the forward node and the VJP (op class) that built it (``passes.autodiff.origin``);
- **passes**: what simplify (rules, constant folding, CSE), decompose, fuse (its kernel, the kernel's members and
  why the kernel ends where it does: the fusion report's boundary lines) and memplan did (``plan.provenance``);
- **buffer**: arena offset, bytes, live interval in kernel positions, in-place reuse, the other values using the
  same bytes at other times; or "not materialized" (a value in registers inside its kernel), or bound memory;
- **LLVM** (llvm backend): the kernel's function and the lines computing the node (``!graphc.node`` tags,
  ``codegen.nodemap``), and the function's assembly with the vector width it uses.

The numpy backend runs no Plan: its report shows the Plan the pipeline builds for the same outputs (what
``numpy-plan`` and ``llvm`` run) and says there is no LLVM IR or assembly.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from graphc.ir import GraphcError, Node
from ops.registry import get_op
from passes.autodiff import GradOrigin, origin
from passes.pipeline import build_plan
from passes.plan import Buffer, Kernel, Plan, intervals
from passes.provenance import Event


@dataclass
class Explanation:
    """The facts about one tensor, by section; ``str()`` is the report."""

    node: Node
    backend: str
    sections: list[tuple[str, list[str]]] = field(default_factory=list)
    computed_by: Node | None = None          # the Plan node computing the value (None: folded away or dropped)
    events: list[Event] = field(default_factory=list)
    kernel: Kernel | None = None
    kernel_index: int | None = None
    buffer: Buffer | None = None
    interval: tuple[int, int] | None = None
    materialized: bool = False
    gradient: GradOrigin | None = None
    function: str | None = None              # the LLVM function of the kernel
    ir_lines: list[str] = field(default_factory=list)
    asm: str = ""
    vector_width: str | None = None          # e.g. "512-bit"

    @property
    def simplified_away(self) -> bool:
        """True when simplification replaced the tensor by another node (or a constant) or dropped it."""
        return self.computed_by is None or self.computed_by.name != self.node.name

    def section(self, title: str) -> list[str]:
        """The lines of section ``title`` (empty when absent)."""
        return next((lines for t, lines in self.sections if t == title), [])

    def __str__(self) -> str:
        parts = []
        for title, lines in self.sections:
            parts.append(f"== {title} " + "=" * max(3, 74 - len(title)))
            parts.extend(f"  {line}" if line else "" for line in lines)
        return "\n".join(parts)

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython / Jupyter
        printer.text(str(self))


def find_node(program: Any, tensor: Node | str) -> Node:
    """The user node ``tensor`` (a tensor or a node name) among the nodes ``program`` computes."""
    nodes = program.nodes
    if isinstance(tensor, str):
        found = [n for n in nodes if n.name == tensor]
        if not found:
            close = difflib.get_close_matches(tensor, [n.name for n in nodes], n=5)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise GraphcError(f"explain: the program computes no node named {tensor!r}{hint}")
        return found[0]
    if not isinstance(tensor, Node):
        raise GraphcError(f"explain: expected a tensor or a node name, got {type(tensor).__name__}")
    if not any(n is tensor for n in nodes):
        frozen = " (a frozen program computes copies of the graph's nodes)" if getattr(program, "frozen", False) else ""
        raise GraphcError(f"explain: {tensor.name!r} (created at {tensor.site}) is not computed by this program"
                          f"{frozen}")
    return tensor


def explain(program: Any, tensor: Node | str) -> Explanation:
    """Explain how ``program`` computes ``tensor`` (see the module docstring)."""
    node = find_node(program, tensor)
    plan = getattr(program, "plan", None)
    built = not isinstance(plan, Plan)
    if built:
        plan = build_plan(program.output_nodes, program.updates)
    ex = Explanation(node, program.backend)
    ex.sections.append(("tensor", _tensor(program, node)))
    if node.backward:
        ex.gradient = origin(node)
        ex.sections.append(("gradient", _gradient(ex.gradient)))
    ex.sections.append(("passes", _passes(ex, plan, built)))
    ex.sections.append(("buffer", _buffer(ex, plan, program)))
    if program.backend == "llvm":
        from runtime.explain_llvm import llvm_sections

        ex.sections.extend(llvm_sections(ex, plan, program))
    else:
        ex.sections.append(("LLVM", [f"none: the {program.backend} backend runs NumPy references, so there is no "
                                     "LLVM IR and no assembly (compile with backend='llvm' to see them)"]))
    return ex


# ------------------------------------------------------------------------------------------------ sections


def _tensor(program: Any, n: Node) -> list[str]:
    lines = [f"{n.name}: {n.op} {n.type}" + (f" = {_small(n)}" if n.op == "const" else ""),
             f"created at {n.site}",
             "a backward (gradient) node, built by autodiff" if n.backward else "a forward node"]
    if n.inputs:
        lines.append("inputs: " + ", ".join(f"{x.name} ({x.op} {x.type})" for x in n.inputs))
    outs = [name for name, o in zip(program.output_names, program.output_nodes) if o is n]
    if outs:
        lines.append(f"program output {', '.join(map(repr, outs))}")
    lines += [f"the new value of param {p.name!r} (a state update)" for p, v in program.updates if v is n]
    return lines


def _gradient(g: GradOrigin | None) -> list[str]:
    if g is None:
        return ["not built by a VJP: a node created in the backward scope (an optimizer's update rule or gradient "
                "post-processing)"]
    f = g.forward
    where = f"forward node {f.name!r} ({f.op} {f.type}, created at {f.site})"
    if g.role == "seed":
        return [f"the seed of the backward pass: d{f.name}/d{f.name} = 1"]
    if g.role == "zero":
        return [f"a zero gradient: the differentiated value does not depend on {f.name!r}"]
    if g.role == "sum":
        return [f"the sum of the gradient contributions to {where}", "(it is read by several forward consumers, "
                "so their VJPs each sent a part)"]
    lines = [f"built by the VJP of {g.op} ({g.vjp}) for {where}"]
    if g.input is not None:
        x = f.inputs[g.input]
        lines.append(f"it is the gradient sent to input {g.input} of {f.name!r}: {x.name!r} ({x.op} {x.type})")
    else:
        lines.append("an intermediate node of that VJP")
    return lines


def _passes(ex: Explanation, plan: Plan, built: bool) -> list[str]:
    n = ex.node
    lines = ["(the Plan the pipeline builds for these outputs; the numpy backend interprets the graph node by node "
             "and runs none of it)"] if built else []
    ex.events = plan.provenance.events_of(n)
    ex.computed_by = p = plan.node_map.get(n)
    steps = [e for e in ex.events if e.stage in ("simplify", "decompose")]
    if not steps and p is not None and p.name == n.name:
        lines.append("simplify: kept as is (no rule, fold or CSE applied)")
    lines += [f"{e.stage}: {e.text}" for e in steps]
    if p is None:
        lines.append("no node computes it at run time: simplification dropped it (every use of its value was "
                     "folded into a constant or simplified away)")
        return lines
    if p.name != n.name:
        lines.append(f"its value is now computed by {p.name!r} ({p.op} {p.type}, created at {p.site})")
    if p.is_leaf:
        return lines
    index = next(i for i, k in enumerate(plan.kernels) if any(m is p for m in k.nodes))
    k = plan.kernels[index]
    ex.kernel, ex.kernel_index = k, index
    others = [m for m in k.nodes if m is not p]
    a = k.anchor
    if not others:
        role = f"alone in kernel {k.name}"
    elif a is p:
        role = f"the anchor of kernel {k.name} (its structured node; {len(others)} other node(s) folded into it)"
    elif a is not None and (get_op(p.op).is_view(p) or _gemm_view(p, k)):
        role = f"folded into kernel {k.name}: read (or written) in place by {a.op} {a.name!r} through its strides"
    elif a is not None:
        role = f"fused into kernel {k.name} as part of the epilogue of {a.op} {a.name!r}, applied before its store"
    else:
        role = f"fused with {len(others)} other node(s) into kernel {k.name}: one loop computes them all"
    lines.append(f"fuse: {role}")
    lines.append(f"  kernel {k.name} [{k.kind}] is number {index} of {len(plan.kernels)} in the schedule")
    if others:
        members = ", ".join(f"{m.name} ({m.op})" for m in k.nodes)
        lines.append(f"  members: {members if len(members) < 400 else members[:397] + '...'}")
    if not p.is_leaf and not get_op(p.op).fusible and k.anchor is None and len(k.nodes) == 1:
        lines.append(f"  {p.op} is a {get_op(p.op).kind} op: it is a kernel of its own (not elementwise)")
    notes = plan.provenance.kernels.get(k.name, [])
    if notes:
        lines.append("  why the kernel ends where it does (fusion report):")
        lines += [f"    {line}" for line in notes[:12]]
        lines += [f"    ... {len(notes) - 12} more (plan.provenance.kernels[{k.name!r}])"] if len(notes) > 12 else []
    lines += [f"{e.stage}: {e.text}" for e in ex.events if e.stage == "memplan"]
    return lines


def _gemm_view(p: Node, k: Kernel) -> bool:
    """True for a view folded into a matmul kernel (an operand read, or the result written, through strides)."""
    return k.kind == "matmul" and p is not k.anchor and not get_op(p.op).fusible


def _buffer(ex: Explanation, plan: Plan, program: Any) -> list[str]:
    p, k = ex.computed_by, ex.kernel
    if p is None:
        return ["none: the value does not exist at run time"]
    if p.is_leaf:
        where = {"input": "the caller's feed array (bound, not in the arena)",
                 "param": f"graph.state[{p.name!r}] (bound zero-copy, not in the arena)",
                 "const": "the constant's own array (bound or embedded in the code, not in the arena)"}
        return [where.get(p.op, "bound memory")]
    in_state = next((q for q, v in plan.state_inplace.items() if v is p), None)
    if in_state is not None and program.backend == "llvm":
        assert k is not None
        return [f"no arena buffer: kernel {k.name} writes it straight into graph.state[{in_state.name!r}] (an "
                "in-place state update: nothing is copied after the call; later kernels read it there)"]
    if in_state is not None:
        return [f"no arena buffer: the plan updates graph.state[{in_state.name!r}] in place from kernel {k.name}; "
                f"the {program.backend} backend keeps the value in an array of its own and copies it after the run"]
    if p not in plan.buffers:
        assert k is not None
        if get_op(p.op).is_view(p) or _gemm_view(p, k):
            return [f"not materialized: a view read in place by kernel {k.name} (its input's buffer, re-indexed)"]
        if k.kind == "matmul" and p is k.anchor and not any(get_op(m.op).fusible for m in k.nodes):
            return [f"not materialized: kernel {k.name}'s GEMM writes it through the strides of the transpose "
                    "that reads it"]
        ex.materialized = False
        return [f"not materialized: lives in registers inside kernel {k.name} (no other kernel, output or update "
                "reads it)"]
    ex.materialized = True
    ex.buffer = b = plan.buffers[p]
    live = intervals(plan.kernels, plan.kept)
    ex.interval = first, last = live[p]
    end = "the end of the program (an output or update value)" if last == len(plan.kernels) else \
        f"kernel {last} ({plan.kernels[last].name})"
    lines = [f"arena offset {b.offset}, {b.nbytes} bytes (arena {plan.arena_bytes} bytes)",
             f"live from kernel {first} ({plan.kernels[first].name}) to {end}"]
    if p in plan.inplace:
        x = plan.inplace[p]
        lines.append(f"in place: overwrites the buffer of {x.name!r} ({x.op}), whose last use is this kernel")
    takers = [v.name for v, x in plan.inplace.items() if x is p]
    if takers:
        lines.append(f"in place: its buffer is then overwritten by {', '.join(map(repr, takers))}")
    sharing = [v.name for v, c in plan.buffers.items() if v is not p and c.nbytes and b.nbytes
               and c.offset < b.offset + b.nbytes and b.offset < c.offset + c.nbytes
               and v not in takers and plan.inplace.get(p) is not v]
    if sharing:
        shown = ", ".join(sharing[:6]) + (f", ... ({len(sharing)} values)" if len(sharing) > 6 else "")
        lines.append(f"the same bytes hold, at other times: {shown}")
    if program.backend == "llvm" and p in set(plan.outputs):
        lines.append("a program output: its kernel writes it straight into the fresh array the call returns")
    return lines


def _small(n: Node) -> str:
    value = n.attrs["value"]
    return str(value.tolist()) if value.size <= 8 else f"<{value.size} values>"


__all__ = ["Explanation", "explain", "find_node"]
