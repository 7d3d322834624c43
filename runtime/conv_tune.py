"""Per-layer convolution algorithms measured on this machine: ``gc.compile(..., tune=True)``.

For every distinct forward conv geometry of a plan left to ``algorithm="auto"`` (``codegen.conv_choice``), each
candidate algorithm is compiled as a one-conv program with the layer's shapes, attributes, bias, weight kind
(constants are packed once at load, as in the real program) and thread count, run on random data, and timed: the
median of :data:`RUNS` calls after a warm-up call (a candidate whose first call takes over
:data:`HOPELESS` × the best median so far is not run again). The rule of thumb's choice is kept unless another
candidate's median is at least :data:`MARGIN` lower, so timing noise does not flip layers back and forth.

Results persist per machine in ``$GRAPHC_CACHE_DIR/conv-tuning/<fingerprint>.json`` (CPU, features, LLVM and
graphc's compiler source: a changed compiler measures again), so a layer is measured once; with ``GRAPHC_CACHE=0``
they are kept for the process only. A damaged table file is ignored (and rewritten). The winners go into
``Plan.algorithms``, which the object cache key covers.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from codegen import cache as object_cache
from codegen.conv_choice import candidates, conv_geometry, tunable, tuning_key
from codegen.lowering import LoweringError
from codegen.target import fingerprint
from graphc.ir import Graph, Node
from passes.plan import Plan

# compiles outputs into a callable program on this many threads with these forced Plan.algorithms
Compiler = Callable[[list[Node], int, dict[str, str]], Any]

RUNS = 5  # timed calls per candidate at least (after one warm-up call) ...
MIN_SECONDS, MAX_RUNS = 0.05, 200  # ... and more for fast layers: until about this long, at most this many
MARGIN = 0.03  # another candidate replaces the rule of thumb's choice only when this much faster
HOPELESS = 3.0  # a first call this many times the best median so far ends a candidate's measurement

_lock = threading.Lock()  # one measurement at a time (they would disturb each other), one writer of the table
_memory: dict[str, dict[str, Any]] = {}  # the table when the cache is off (this process only)


def _table_path() -> str:
    return os.path.join(object_cache.cache_dir(), "conv-tuning", fingerprint()[:32] + ".json")


def _load() -> dict[str, dict[str, Any]]:
    if not object_cache.cache_enabled():
        return _memory
    try:
        with open(_table_path(), encoding="utf-8") as f:
            table = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(table, dict):
        return {}
    return {k: v for k, v in table.items()
            if isinstance(v, dict) and isinstance(v.get("algorithm"), str) and isinstance(v.get("ms"), dict)}


def _save(table: dict[str, dict[str, Any]]) -> None:
    if not object_cache.cache_enabled():
        return
    path = _table_path()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        object_cache.atomic_write(path, json.dumps(table, indent=1, sort_keys=True).encode())
    except OSError:  # an unwritable cache directory: the choices still hold for this program
        pass


def tune(plan: Plan, threads: int, compiler: Compiler) -> dict[str, str]:
    """{tuning key: fastest algorithm} for every tunable conv of ``plan`` (measuring the geometries not in the
    table yet, with programs built by ``compiler``); also written into ``plan.algorithms``."""
    nodes = {tuning_key(n, threads): n for k in plan.kernels for n in k.nodes if tunable(n)}
    with _lock:
        table = _load()
        missing = [key for key in nodes if key not in table]
        for key in missing:
            table[key] = measure(nodes[key], threads, compiler)
        if missing:
            _save(table)
    choices = {key: table[key]["algorithm"] for key in nodes}
    plan.algorithms.update(choices)
    return choices


def table_entries() -> dict[str, dict[str, Any]]:
    """The measurements on record for this machine: tuning key → {"algorithm", "ms": {algorithm: median}}."""
    with _lock:
        return dict(_load())


def measure(node: Node, threads: int, compiler: Compiler) -> dict[str, Any]:
    """{"algorithm": the winner, "ms": {candidate: median milliseconds}} for a conv like ``node``."""
    key = tuning_key(node, threads)
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal(node.inputs[0].shape).astype(node.dtype)}
    times: dict[str, float] = {}
    options = candidates(conv_geometry(node))  # the rule of thumb's choice first
    for algorithm in options:
        program = _program(node, threads, {key: algorithm}, compiler)
        if program is None:
            continue
        best = min(times.values(), default=float("inf"))
        start = time.perf_counter()
        program(**feeds)
        first = time.perf_counter() - start
        if first > HOPELESS * best:
            times[algorithm] = first * 1e3
            continue
        runs = []
        for _ in range(max(RUNS, min(MAX_RUNS, int(MIN_SECONDS / max(first, 1e-9))))):
            start = time.perf_counter()
            program(**feeds)
            runs.append(time.perf_counter() - start)
        times[algorithm] = float(np.median(runs)) * 1e3
    default = options[0]
    if not times:  # nothing could be compiled: the program's own compile reports why, under the rule of thumb
        return {"algorithm": default, "ms": {}}
    winner = min(times, key=times.__getitem__)
    if default in times and times[winner] > (1 - MARGIN) * times[default]:
        winner = default
    return {"algorithm": winner, "ms": {k: round(v, 4) for k, v in times.items()}}


def _program(node: Node, threads: int, algorithms: dict[str, str], compiler: Compiler) -> Any:
    """A compiled one-conv program like ``node`` running ``algorithms``' choice (None when that algorithm cannot
    lower this geometry, e.g. im2col columns over the scratch budget)."""
    x, w = node.inputs[:2]
    rng = np.random.default_rng(1)
    graph = Graph("conv_tune")
    inputs = [graph.input("x", x.shape, x.dtype)]
    for name, source in (("w", w), ("b", node.inputs[2] if len(node.inputs) == 3 else None)):
        if source is None:
            continue
        value = (rng.standard_normal(source.shape) * 0.1).astype(source.dtype)
        inputs.append(graph.const(value, name=name) if source.op == "const" else graph.param(name, value))
    y = graph.add_node("conv2d", tuple(inputs), node.attrs, node.type)
    try:
        return compiler([y], threads, algorithms)
    except LoweringError:
        return None
