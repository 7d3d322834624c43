"""What every compiler pass did, as files: ``gc.compile(..., dump_dir=DIR)``, ``graphc passes`` and ``graphc ir``.

A dump folder holds one text file and one DOT file per stage of ``passes.pipeline.PASSES`` (the Plan stages are
backend-independent, so a numpy-backend program is dumped from a Plan built for the purpose):

- ``00_graph``: the input graph (forward and backward nodes; outputs and update values as final arrows);
- ``01_simplify``: the graph after constant folding, identities, CSE and DCE, with a count per rewrite;
- ``02_fuse``: the kernels, each a cluster of its nodes, and the fusion report (why fusion stopped at each
  kernel boundary);
- ``03_schedule``: the kernel order and its peak live bytes;
- ``04_memplan``: naive vs planned arena bytes, and per buffer its live interval, offset, size and in-place
  reuse; the DOT shows which kernel writes and reads which buffer;
- ``05_verify.txt``: the result of ``verify_plan``;
- for ``backend="llvm"``: ``06_llvm.ll`` (as emitted), ``07_llvm_opt.ll`` (after O3), ``08_asm.s`` and
  ``09_kernels.txt`` (per kernel: ops, vector width, FLOPs, bytes).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from typing import Any

from graphc.ir import Node
from graphc.viz import node_label, to_dot
from passes import memplan
from passes.pipeline import build_plan
from passes.plan import Kernel, Plan


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


def _q(text: str) -> str:
    """A DOT string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def plan_of(program: Any) -> Plan:
    """The program's Plan, or (numpy backend) the Plan the pipeline builds for its outputs and updates."""
    plan = getattr(program, "plan", None)
    return plan if isinstance(plan, Plan) else build_plan(program.output_nodes, program.updates)


def dump_program(program: Any, folder: str) -> Dump:
    """Write every stage of ``program``'s compilation into ``folder`` (created if needed)."""
    os.makedirs(folder, exist_ok=True)
    out = Dump(folder)
    plan = plan_of(program)
    _graph_stage(out, program)
    _simplify_stage(out, plan)
    _fuse_stage(out, plan)
    _schedule_stage(out, plan)
    _memplan_stage(out, plan)
    plan.verify()
    out.write("05_verify.txt", f"verify_plan: ok ({len(plan.kernels)} kernels, {len(plan.buffers)} buffers; no two "
                               "simultaneously live buffers overlap)")
    out.summary.append("verify_plan: ok")
    if hasattr(program, "llvm_ir"):
        _llvm_stage(out, program)
    return out


# ------------------------------------------------------------------------------------------------ stages


def _graph_stage(out: Dump, program: Any) -> None:
    named = dict(zip(program.output_names, program.output_nodes))
    named.update({f"new {param.name}": value for param, value in program.updates})
    nodes = program.nodes
    lines = [f"graph {program.graph.name!r}: {len(nodes)} nodes reach the outputs and updates"]
    for n in nodes:
        args = ", ".join(x.name for x in n.inputs)
        tag = "  [backward]" if n.backward else ""
        lines.append(f"  {n.name} = {n.op}({args}) : {n.type}{tag}")
    lines += [f"  output {k} = {v.name}" for k, v in named.items()]
    out.write("00_graph.txt", "\n".join(lines))
    out.write("00_graph.dot", to_dot(named))
    backward = sum(1 for n in nodes if n.backward)
    out.summary.append(f"graph: {len(nodes)} nodes ({backward} backward), {len(named)} outputs/updates")


def _simplify_stage(out: Dump, plan: Plan) -> None:
    report = plan.report.get("simplify", {})
    rewrites = report.get("rewrites", {}) if isinstance(report, dict) else {}
    before, after = report.get("nodes_before", "?"), report.get("nodes_after", "?")
    lines = [f"simplify: {before} nodes -> {after} nodes"]
    lines += [f"  {rule}: {count}" for rule, count in sorted(rewrites.items())]
    lines += ["", "simplified graph:"]
    for n in plan.graph.nodes:
        lines.append(f"  {n.name} = {n.op}({', '.join(x.name for x in n.inputs)}) : {n.type}")
    out.write("01_simplify.txt", "\n".join(lines))
    named = dict(zip([f"output {i}" for i in range(len(plan.outputs))], plan.outputs))
    named.update({f"new {param.name}": value for param, value in plan.updates})
    out.write("01_simplify.dot", to_dot(named))
    out.summary.append(f"simplify: {before} -> {after} nodes ({sum(rewrites.values())} rewrites)")


def _kernel_title(i: int, k: Kernel) -> str:
    return f"#{i} {k.name} [{k.kind}]"


def _fuse_stage(out: Dump, plan: Plan) -> None:
    report = [str(line) for line in plan.report.get("fusion", [])]  # type: ignore[union-attr]
    lines = [f"{len(plan.kernels)} kernels from {sum(len(k.nodes) for k in plan.kernels)} ops"]
    for i, k in enumerate(plan.kernels):
        lines.append(f"  {_kernel_title(i, k)}: {' -> '.join(n.op for n in k.nodes)}")
        lines.append(f"      reads {', '.join(x.name for x in k.inputs) or '-'}; "
                     f"writes {', '.join(v.name for v in k.outputs) or '-'}")
    lines += ["", "fusion report (why each kernel boundary exists):", *(f"  {line}" for line in report)]
    out.write("02_fuse.txt", "\n".join(lines))
    ids: dict[Node, str] = {}
    dot = ["digraph fuse {", "  graph [rankdir=LR, fontname=Helvetica];", "  node [fontname=Helvetica, fontsize=10];"]
    for i, k in enumerate(plan.kernels):
        dot.append(f"  subgraph cluster_k{i} {{ label={_q(_kernel_title(i, k))}; style=rounded; color=\"#2c4f7c\";")
        for n in k.nodes:
            ids[n] = f"n{len(ids)}"
            dot.append(f"    {ids[n]} [label={_q(node_label(n))}, shape=box];")
        dot.append("  }")
    for k in plan.kernels:
        for n in k.nodes:
            for x in n.inputs:
                if x not in ids:
                    ids[x] = f"n{len(ids)}"
                    dot.append(f"  {ids[x]} [label={_q(node_label(x))}, shape=ellipse, style=filled, "
                               'fillcolor="#ececec"];')
                dot.append(f"  {ids[x]} -> {ids[n]};")
    out.write("02_fuse.dot", "\n".join(dot + ["}"]))
    fused = sum(1 for k in plan.kernels if len(k.nodes) > 1)
    out.summary.append(f"fuse: {lines[0]} ({fused} fused groups); {len(report)} report lines")


def _producers(plan: Plan) -> dict[Node, int]:
    return {v: i for i, k in enumerate(plan.kernels) for v in k.outputs}


def _schedule_stage(out: Dump, plan: Plan) -> None:
    report = [str(line) for line in plan.report.get("schedule", [])]  # type: ignore[union-attr]
    out.write("03_schedule.txt", "\n".join([*report, "", plan.describe()]))
    producer = _producers(plan)
    dot = ["digraph schedule {", "  graph [rankdir=TB, fontname=Helvetica];",
           "  node [fontname=Helvetica, fontsize=10, shape=box, style=rounded];"]
    for i, k in enumerate(plan.kernels):
        dot.append(f"  k{i} [label={_q(_kernel_title(i, k) + chr(10) + ' -> '.join(n.op for n in k.nodes))}];")
    for i, k in enumerate(plan.kernels):
        for x in dict.fromkeys(k.inputs):
            if x in producer:
                dot.append(f"  k{producer[x]} -> k{i} [label={_q(x.name)}];")
    dot += [f"  k{i} -> k{i + 1} [style=dotted, color=grey, constraint=false];" for i in range(len(plan.kernels) - 1)]
    out.write("03_schedule.dot", "\n".join(dot + ["}"]))
    out.summary.append(f"schedule: {report[0] if report else f'{len(plan.kernels)} kernels'}")


def _memplan_stage(out: Dump, plan: Plan) -> None:
    keep = set(plan.outputs) | {v for _, v in plan.updates}
    live = memplan.intervals(plan.kernels, keep)
    report = [str(line) for line in plan.report.get("memory", [])]  # type: ignore[union-attr]
    head = f"{'value':<28} {'op':<22} {'live':>10} {'offset':>10} {'bytes':>10} {'end':>10}  in place of"
    lines = [*report, "", head]
    rows = sorted(plan.buffers.items(), key=lambda item: (item[1].offset, live.get(item[0], (0, 0))[0]))
    for v, buf in rows:
        s, e = live.get(v, (-1, -1))
        reuse = plan.inplace[v].name if v in plan.inplace else ""
        lines.append(f"{v.name:<28} {v.op:<22} {f'[{s},{e}]':>10} {buf.offset:>10} {buf.nbytes:>10} "
                     f"{buf.offset + buf.nbytes:>10}  {reuse}")
    out.write("04_memplan.txt", "\n".join(lines))
    dot = ["digraph memplan {", "  graph [rankdir=LR, fontname=Helvetica];",
           "  node [fontname=Helvetica, fontsize=10];"]
    bid = {v: f"b{i}" for i, v in enumerate(plan.buffers)}
    for v, buf in plan.buffers.items():
        s, e = live.get(v, (-1, -1))
        label = f"{v.name}\n@{buf.offset} +{buf.nbytes}\nlive [{s},{e}]"
        dot.append(f"  {bid[v]} [label={_q(label)}, shape=note, style=filled, fillcolor=\"#fff0a8\"];")
    for i, k in enumerate(plan.kernels):
        dot.append(f"  k{i} [label={_q(_kernel_title(i, k))}, shape=box, style=rounded];")
        dot += [f"  {bid[x]} -> k{i};" for x in dict.fromkeys(k.inputs) if x in bid]
        dot += [f"  k{i} -> {bid[v]};" for v in k.outputs if v in bid]
    out.write("04_memplan.dot", "\n".join(dot + ["}"]))
    out.summary.append("memplan: " + "; ".join(report[:1] + [f"arena {plan.arena_bytes} bytes"]))


def _llvm_stage(out: Dump, program: Any) -> None:
    ir_text, optimized, asm = program.llvm_ir(optimized=False), program.llvm_ir(optimized=True), program.asm()
    out.write("06_llvm.ll", ir_text)
    out.write("07_llvm_opt.ll", optimized)
    out.write("08_asm.s", asm)
    out.write("09_kernels.txt", format_kernels(program.kernels_info()))
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


# ------------------------------------------------------------------------------------------------- CLI


def add_ir_parser(subparsers: Any) -> argparse.ArgumentParser:
    from graphc.cli import _add_target_args

    parser = subparsers.add_parser(
        "ir", help="print the LLVM IR, assembly or per-kernel facts of a target",
        description="Compile a target with the llvm backend and print its LLVM IR (as emitted, by default).")
    _add_target_args(parser)
    show = parser.add_mutually_exclusive_group()
    show.add_argument("--optimized", action="store_true", help="the IR after O3")
    show.add_argument("--asm", action="store_true", help="the host assembly")
    show.add_argument("--kernels", action="store_true", help="per kernel: ops, vector width, FLOPs, bytes")
    parser.set_defaults(handler=cmd_ir)
    return parser


def cmd_ir(args: argparse.Namespace) -> int:
    from graphc.api import compile as compile_program
    from graphc.cli import as_outputs, load_target

    _, obj = load_target(args.target)
    program = compile_program(as_outputs(obj), backend="llvm")
    if args.kernels:
        print(format_kernels(program.kernels_info()))
    elif args.asm:
        print(program.asm())
    else:
        print(program.llvm_ir(optimized=args.optimized))
    return 0


def add_passes_parser(subparsers: Any) -> argparse.ArgumentParser:
    from graphc.cli import _add_target_args

    parser = subparsers.add_parser(
        "passes", help="write what every compiler pass did (text and DOT per stage)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_target_args(parser)
    parser.add_argument("-o", "--output", metavar="DIR", help="the folder (default: FILE's stem + _passes)")
    parser.add_argument("--backend", choices=("llvm", "numpy"), default="llvm",
                        help="llvm also writes the IR, optimized IR, asm and kernel facts (default: llvm)")
    parser.set_defaults(handler=cmd_passes)
    return parser


def cmd_passes(args: argparse.Namespace) -> int:
    from graphc.api import compile as compile_program
    from graphc.cli import as_outputs, load_target, split_spec

    _, obj = load_target(args.target)
    folder = args.output or os.path.splitext(os.path.basename(split_spec(args.target)[0]))[0] + "_passes"
    program = compile_program(as_outputs(obj), backend=args.backend)
    result = dump_program(program, folder)
    for line in result.summary:
        print(line)
    print(f"wrote {len(result.files)} files to {folder}")
    return 0


__all__ = ["Dump", "dump_program", "format_kernels", "plan_of"]
