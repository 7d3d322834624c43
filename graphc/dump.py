"""What every compiler pass did, as files: ``gc.compile(..., dump_dir=DIR)`` and ``graphc passes``.

The stages come from ``passes.pipeline.PIPELINE`` itself (the list the compiler runs), numbered in that order, so a
new pass shows up here without touching this module (as its report, until it gets a writer of its own). A dump
folder holds, for a pipeline of simplify, decompose, fuse, schedule and memplan:

- ``00_graph``: the input graph (forward and backward nodes; outputs and update values as final arrows);
- ``01_simplify``: the graph after constant folding, identities, CSE and DCE, with a count per rewrite;
- ``02_decompose``: the ops rewritten into simpler ops (inference batch norm) and the resulting graph;
- ``03_fuse``: the kernels, each a cluster of its nodes, and the fusion report (why fusion stopped at each
  kernel boundary);
- ``04_schedule``: the kernel order and its peak live bytes;
- ``05_memplan``: naive vs planned arena bytes, and per buffer its live interval, offset, size and in-place
  reuse; the DOT shows which kernel writes and reads which buffer;
- ``06_verify_plan.txt``: the result of ``verify_plan``;
- for ``backend="llvm"``: ``07_llvm.ll`` (as emitted), ``08_llvm_opt.ll`` (after O3), ``09_asm.s`` and
  ``10_kernels.txt`` (per kernel: ops, vector width, FLOPs, bytes).

Every stage writes ``.txt``; those with a picture also ``.dot`` (``graphviz.Digraph`` source). The Plan stages are
backend-independent, so a numpy-backend program is dumped from a Plan built for the purpose. Each summary line
ends with the time the pass took on this program.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import graphviz

from graphc.ir import GraphcError, Node
from graphc.viz import dot_label, node_label, to_dot
from passes.pipeline import CHECK, PIPELINE, build_plan
from passes.plan import Kernel, Plan, intervals


@dataclass
class Dump:
    """The folder written, its files, and one summary line per stage."""

    folder: str
    files: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)

    def write(self, name: str, text: str) -> None:
        path = os.path.join(self.folder, name)
        with open(path, "w") as f:
            f.write(text if text.endswith("\n") else text + "\n")
        self.files.append(path)


def plan_of(program: Any) -> Plan:
    """The program's Plan, or (numpy backend) the Plan the pipeline builds for its outputs and updates."""
    plan = getattr(program, "plan", None)
    return plan if isinstance(plan, Plan) else build_plan(program.output_nodes, program.updates)


def format_timings(plan: Plan) -> str:
    """One line per pipeline stage with the seconds it took to build ``plan``, and the total."""
    width = max([len("total")] + [len(name) for name in plan.timings])
    lines = [f"{name:<{width}} {1000 * seconds:9.2f} ms" for name, seconds in plan.timings.items()]
    lines.append(f"{'total':<{width}} {1000 * sum(plan.timings.values()):9.2f} ms")
    return "\n".join(lines)


def dump_program(program: Any, folder: str) -> Dump:
    """Write every stage of ``program``'s compilation into ``folder`` (created if needed)."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise GraphcError(f"cannot dump into {folder!r}: it exists and is not a folder")
    os.makedirs(folder, exist_ok=True)
    out = Dump(folder)
    plan = plan_of(program)
    _graph_stage(out, "00_graph", program)
    index = 0
    for index, stage in enumerate(PIPELINE, 1):
        line = WRITERS.get(stage.name, _report_stage)(out, f"{index:02d}_{stage.name}", plan, stage.name)
        out.summary.append(f"{stage.name}: {line}{_took(plan, stage.name)}")
    plan.verify()
    out.write(f"{index + 1:02d}_{CHECK}.txt", f"{CHECK}: ok ({len(plan.kernels)} kernels, {len(plan.buffers)} "
                                              "buffers; no two simultaneously live buffers overlap)")
    out.summary.append(f"{CHECK}: ok{_took(plan, CHECK)}")
    if hasattr(program, "llvm_ir"):
        _llvm_stage(out, index + 2, program)
    return out


def _took(plan: Plan, name: str) -> str:
    seconds = plan.timings.get(name)
    return "" if seconds is None else f" [{1000 * seconds:.1f} ms]"


def _named_roots(plan: Plan) -> dict[str, Node]:
    named = dict(zip([f"output {i}" for i in range(len(plan.outputs))], plan.outputs))
    named.update({f"new {param.name}": value for param, value in plan.updates})
    return named


def _listing(nodes: list[Node]) -> list[str]:
    return [f"  {n.name} = {n.op}({', '.join(x.name for x in n.inputs)}) : {n.type}" for n in nodes]


# ------------------------------------------------------------------------------------------------ stages


def _graph_stage(out: Dump, stem: str, program: Any) -> None:
    named = dict(zip(program.output_names, program.output_nodes))
    named.update({f"new {param.name}": value for param, value in program.updates})
    nodes = program.nodes
    lines = [f"graph {program.graph.name!r}: {len(nodes)} nodes reach the outputs and updates"]
    lines += [line + ("  [backward]" if n.backward else "") for n, line in zip(nodes, _listing(nodes))]
    lines += [f"  output {k} = {v.name}" for k, v in named.items()]
    out.write(f"{stem}.txt", "\n".join(lines))
    out.write(f"{stem}.dot", to_dot(named))
    backward = sum(1 for n in nodes if n.backward)
    out.summary.append(f"graph: {len(nodes)} nodes ({backward} backward), {len(named)} outputs/updates")


def _simplify_stage(out: Dump, stem: str, plan: Plan, key: str) -> str:
    report = plan.report.get("simplify", {})
    rewrites = {rule: count for rule, count in report.get("rewrites", {}).items() if count}
    before, after = report.get("nodes_before", "?"), report.get("nodes_after", "?")
    lines = [f"simplify: {before} nodes -> {after} nodes", *(f"  {rule}: {n}" for rule, n in sorted(rewrites.items()))]
    out.write(f"{stem}.txt", "\n".join(lines + ["", "simplified graph:"] + _listing(plan.graph.nodes)))
    out.write(f"{stem}.dot", to_dot(_named_roots(plan)))
    return f"{before} -> {after} nodes ({sum(rewrites.values())} rewrites)"


def _decompose_stage(out: Dump, stem: str, plan: Plan, key: str) -> str:
    report = [str(line) for line in plan.report.get("decompose", [])]
    lines = [f"{len(report)} nodes decomposed", *(f"  {line}" for line in report)]
    out.write(f"{stem}.txt", "\n".join(lines + ["", "graph after decomposition:"] + _listing(plan.graph.nodes)))
    out.write(f"{stem}.dot", to_dot(_named_roots(plan)))
    return lines[0]


def _kernel_title(i: int, k: Kernel) -> str:
    return f"#{i} {k.name} [{k.kind}]"


def _digraph(name: str, rankdir: str) -> graphviz.Digraph:
    return graphviz.Digraph(name, graph_attr={"rankdir": rankdir, "fontname": "Helvetica"},
                            node_attr={"fontname": "Helvetica", "fontsize": "10"})


def _fuse_stage(out: Dump, stem: str, plan: Plan, key: str) -> str:
    report = [str(line) for line in plan.report.get("fusion", [])]
    head = f"{len(plan.kernels)} kernels from {sum(len(k.nodes) for k in plan.kernels)} ops"
    lines = [head]
    for i, k in enumerate(plan.kernels):
        lines.append(f"  {_kernel_title(i, k)}: {' -> '.join(n.op for n in k.nodes)}")
        lines.append(f"      reads {', '.join(x.name for x in k.inputs) or '-'}; "
                     f"writes {', '.join(v.name for v in k.outputs) or '-'}")
    lines += ["", "fusion report (why each kernel boundary exists):", *(f"  {line}" for line in report)]
    out.write(f"{stem}.txt", "\n".join(lines))
    dot = _digraph("fuse", "LR")
    ids: dict[Node, str] = {}
    for i, k in enumerate(plan.kernels):
        with dot.subgraph(name=f"cluster_k{i}") as cluster:
            cluster.attr(label=dot_label(_kernel_title(i, k)), style="rounded", color="#2c4f7c")
            for n in k.nodes:
                ids[n] = f"n{len(ids)}"
                cluster.node(ids[n], label=dot_label(node_label(n)), shape="box")
    for k in plan.kernels:
        for n in k.nodes:
            for x in n.inputs:
                if x not in ids:
                    ids[x] = f"n{len(ids)}"
                    dot.node(ids[x], label=dot_label(node_label(x)), shape="ellipse", style="filled",
                             fillcolor="#ececec")
                dot.edge(ids[x], ids[n])
    out.write(f"{stem}.dot", dot.source)
    fused = sum(1 for k in plan.kernels if len(k.nodes) > 1)
    return f"{head} ({fused} fused groups); {len(report)} report lines"


def _schedule_stage(out: Dump, stem: str, plan: Plan, key: str) -> str:
    report = [str(line) for line in plan.report.get("schedule", [])]
    out.write(f"{stem}.txt", "\n".join([*report, "", plan.describe()]))
    producer = {v: i for i, k in enumerate(plan.kernels) for v in k.outputs}
    dot = _digraph("schedule", "TB")
    for i, k in enumerate(plan.kernels):
        text = _kernel_title(i, k) + "\n" + " -> ".join(n.op for n in k.nodes)
        dot.node(f"k{i}", label=dot_label(text), shape="box", style="rounded")
    for i, k in enumerate(plan.kernels):
        for x in dict.fromkeys(k.inputs):
            if x in producer:
                dot.edge(f"k{producer[x]}", f"k{i}", label=dot_label(x.name))
    for i in range(len(plan.kernels) - 1):
        dot.edge(f"k{i}", f"k{i + 1}", style="dotted", color="grey", constraint="false")
    out.write(f"{stem}.dot", dot.source)
    return report[0] if report else f"{len(plan.kernels)} kernels"


def _memplan_stage(out: Dump, stem: str, plan: Plan, key: str) -> str:
    live = intervals(plan.kernels, plan.kept)
    report = [str(line) for line in plan.report.get("memory", [])]
    head = f"{'value':<28} {'op':<22} {'live':>10} {'offset':>10} {'bytes':>10} {'end':>10}  in place of"
    lines = [*report, "", head]
    rows = sorted(plan.buffers.items(), key=lambda item: (item[1].offset, live.get(item[0], (0, 0))[0]))
    for v, buf in rows:
        s, e = live.get(v, (-1, -1))
        reuse = plan.inplace[v].name if v in plan.inplace else ""
        lines.append(f"{v.name:<28} {v.op:<22} {f'[{s},{e}]':>10} {buf.offset:>10} {buf.nbytes:>10} "
                     f"{buf.offset + buf.nbytes:>10}  {reuse}")
    out.write(f"{stem}.txt", "\n".join(lines))
    dot = _digraph("memplan", "LR")
    bid = {v: f"b{i}" for i, v in enumerate(plan.buffers)}
    for v, buf in plan.buffers.items():
        s, e = live.get(v, (-1, -1))
        dot.node(bid[v], label=dot_label(f"{v.name}\n@{buf.offset} +{buf.nbytes}\nlive [{s},{e}]"), shape="note",
                 style="filled", fillcolor="#fff0a8")
    for i, k in enumerate(plan.kernels):
        dot.node(f"k{i}", label=dot_label(_kernel_title(i, k)), shape="box", style="rounded")
        for x in dict.fromkeys(k.inputs):
            if x in bid:
                dot.edge(bid[x], f"k{i}")
        for v in k.outputs:
            if v in bid:
                dot.edge(f"k{i}", bid[v])
    out.write(f"{stem}.dot", dot.source)
    return "; ".join(report[:1] + [f"arena {plan.arena_bytes} bytes"])


def _report_stage(out: Dump, stem: str, plan: Plan, key: str) -> str:
    """A pass without a writer of its own: its report as text."""
    report = plan.report.get(key)
    lines = [str(line) for line in report] if isinstance(report, list) else [str(report)]
    out.write(f"{stem}.txt", "\n".join(lines))
    return lines[0] if lines else "no report"


WRITERS: dict[str, Callable[[Dump, str, Plan, str], str]] = {
    "simplify": _simplify_stage, "decompose": _decompose_stage, "fuse": _fuse_stage, "schedule": _schedule_stage,
    "memplan": _memplan_stage,
}


def _llvm_stage(out: Dump, first: int, program: Any) -> None:
    ir_text, optimized, asm = program.llvm_ir(optimized=False), program.llvm_ir(optimized=True), program.asm()
    for offset, (name, text) in enumerate((("llvm.ll", ir_text), ("llvm_opt.ll", optimized), ("asm.s", asm),
                                          ("kernels.txt", format_kernels(program.kernels_info())))):
        out.write(f"{first + offset:02d}_{name}", text)
    out.summary.append(f"llvm: IR {ir_text.count(chr(10))} lines, optimized {optimized.count(chr(10))} lines, "
                       f"asm {asm.count(chr(10))} lines")


def format_kernels(info: list[dict[str, Any]]) -> str:
    """The per-kernel facts table of ``NativeProgram.kernels_info()``."""
    width = max([6] + [len(k["name"]) for k in info])
    head = f"{'kernel':<{width}} {'kind':<12} {'vector':<7} {'FLOPs':>12} {'bytes':>12}  ops"
    lines = [head, "-" * len(head)]
    for k in info:
        ops = " -> ".join(k["ops"])
        ops = ops if len(ops) <= 60 else ops[:57] + "..."
        lines.append(f"{k['name']:<{width}} {k['kind']:<12} {k['vector_width']:<7} {k['flops']:>12} {k['bytes']:>12}  "
                     f"{ops}")
    return "\n".join(lines)


__all__ = ["Dump", "dump_program", "format_kernels", "format_timings", "plan_of"]
