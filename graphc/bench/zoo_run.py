"""``graphc bench models``: graphc against onnxruntime and PyTorch on whole networks, from the same ONNX file.

Per model and batch size: graphc (``graphc.onnx.import_model(inference=True)`` of the file, compiled frozen for the
llvm backend with ``threads``; with ``tune`` each conv layer runs the algorithm measured fastest, see
``runtime.conv_tune``), onnxruntime (an ``InferenceSession`` of the file with
``intra_op_num_threads=threads`` and ``inter_op_num_threads=1``) and PyTorch (the torchvision module itself in eval
mode under ``torch.no_grad()``, with ``torch.set_num_threads(threads)``; not for ``--onnx`` files). Every system is
built outside the timing (graphc's import and compile times are recorded), called ``warmup`` times (at least once:
the first call's outputs are the check), then timed in interleaved rounds — graphc, onnxruntime, torch, graphc, ...
— so that a noisy neighbour slows all of them alike: ``repeat`` rounds, fewer (at least 3) when a row has run past
``max_seconds``. The table shows medians, graphc's median divided by each other median (< 1: graphc is faster), the
check: the largest absolute difference between graphc's outputs and onnxruntime's (PyTorch's when onnxruntime is
missing), and the spread of the per-round ratios graphc ÷ onnxruntime (their quartiles; the JSON also has their
median, for PyTorch too), which says how much of a ratio is the machine's noise.

Any failure (an op graphc cannot import, a compile error, an export error) becomes that row's error; the run goes
on. Where the models come from is :mod:`graphc.bench.zoo`.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphc.bench import zoo
from graphc.bench.context import Context, Row, importable
from graphc.bench.runner import blas_threads, metadata

SYSTEMS = {"graphc": "graphc-llvm", "onnxruntime": "onnxruntime", "torch": "torch (eager)"}
CHECK_LABEL = {"onnxruntime": "ort", "torch": "torch", "onnx-reference": "onnx-ref"}
CHECK_TOL = 1e-3  # a check above CHECK_TOL × max |reference| is marked MISMATCH


@dataclass
class Settings:
    """What ``graphc bench models`` runs: torchvision models and ONNX files (path -> its inputs), and how."""

    models: list[str]
    onnx: dict[str, list[zoo.OnnxInput]]
    batches: list[int]
    threads: int = 1
    repeat: int = 7
    warmup: int = 2
    max_seconds: float = 60.0
    small: bool = False
    exporter: str = "torchscript"
    tune: bool = False  # graphc times each conv layer's algorithms first (compile(tune=True))
    cache_dir: str = field(default_factory=zoo.default_cache_dir)

    @property
    def resolution(self) -> int:
        return zoo.SMALL_RESOLUTION if self.small else zoo.RESOLUTION


@dataclass
class Case:
    """One (model, batch) line of the table: a row per system, the check and what the case itself noted."""

    model: str
    batch: int | None
    source: str  # "torchvision" or the ONNX file's path
    input: str = ""  # the first input's shape without the batch, e.g. "3x224x224"
    onnx_path: str | None = None
    rows: dict[str, Row] = field(default_factory=dict)
    error: str | None = None  # the case could not run at all (export failed, missing framework, bad input)
    check: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def median(self, system: str) -> float | None:
        row = self.rows.get(system)
        return row.median_ms if row is not None and not row.error else None

    def ratio(self, system: str) -> float | None:
        """graphc's median ÷ ``system``'s median."""
        mine, other = self.median("graphc"), self.median(system)
        return mine / other if mine and other else None

    def round_ratios(self, system: str) -> list[float]:
        """graphc's time ÷ ``system``'s in each round both ran. A round's calls run back to back, so a slow spell of
        the machine meets both: these ratios move less between rounds than the times do."""
        mine, other = self.rows.get("graphc"), self.rows.get(system)
        if mine is None or other is None or mine.error or other.error:
            return []
        return [a / b for a, b in zip(mine.times_ms, other.times_ms) if b > 0]

    def ratio_spread(self, system: str) -> dict[str, float] | None:
        """The per-round ratios' median and quartiles (``q1``, ``q3``) and how many rounds there were."""
        ratios = self.round_ratios(system)
        if not ratios:
            return None
        q1, median, q3 = (float(v) for v in np.percentile(ratios, [25, 50, 75]))
        return {"median": median, "q1": q1, "q3": q3, "rounds": len(ratios)}

    def summary(self) -> dict[str, Any]:
        return {"model": self.model, "batch": self.batch, "source": self.source, "input": self.input,
                "onnx": self.onnx_path, "error": self.error, "check": self.check,
                "graphc_over_onnxruntime": self.ratio("onnxruntime"), "graphc_over_torch": self.ratio("torch"),
                "graphc_over_onnxruntime_per_round": self.ratio_spread("onnxruntime"),
                "graphc_over_torch_per_round": self.ratio_spread("torch"),
                "systems": {k: r.summary() for k, r in self.rows.items()}, **self.extra}


def _error(err: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"[:200]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -------------------------------------------------------------------------------------------- systems


def build_graphc(path: str, shapes: dict[str, tuple[int, ...]], feeds: dict[str, np.ndarray], threads: int,
                 row: Row, tune: bool = False) -> Callable[[], list[Any]]:
    from graphc.onnx import import_model

    start = time.perf_counter()
    model = import_model(path, input_shapes=shapes, inference=True)
    row.extra["import_s"], row.extra["opset"] = time.perf_counter() - start, model.opset
    start = time.perf_counter()
    program = model.compile(backend="llvm", threads=threads, tune=tune)
    row.extra["compile_s"] = time.perf_counter() - start
    names, mine = list(model.outputs), {k: feeds[k] for k in model.inputs}

    def call() -> list[Any]:
        results = program(**mine)
        return [results[n] for n in names]

    return call


def build_onnxruntime(ort: Any, path: str, feeds: dict[str, np.ndarray], threads: int,
                      row: Row) -> Callable[[], list[Any]]:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3  # errors only
    start = time.perf_counter()
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    row.extra["session_s"] = time.perf_counter() - start
    mine = {i.name: feeds[i.name] for i in session.get_inputs()}
    return lambda: session.run(None, mine)


def build_torch(torch: Any, module: Any, x: np.ndarray) -> Callable[[], Any]:
    tx = torch.from_numpy(x)

    def call() -> Any:
        with torch.no_grad():
            return module(tx)

    return call


def _arrays(outputs: Any) -> list[np.ndarray]:
    """A system's outputs (list of arrays, a tensor or a tuple of tensors) as NumPy arrays."""
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return [np.asarray(o.detach().numpy() if hasattr(o, "detach") else o) for o in outputs]


def max_abs_diff(mine: list[np.ndarray], ref: list[np.ndarray]) -> tuple[float, float]:
    """(max |mine - ref|, max |ref|) over the outputs both have; a NaN in either makes the first NaN."""
    diffs, tops = [0.0], [0.0]
    for a, b in zip(mine, ref):
        if a.shape != b.shape:
            raise ValueError(f"output shapes differ: {a.shape} vs {b.shape}")
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        diffs.append(float(np.max(np.abs(a64 - b64), initial=0.0)))
        tops.append(float(np.max(np.abs(b64), initial=0.0)))
    return float(np.max(diffs)), float(np.max(tops))  # np.max, unlike max(), keeps a NaN


# --------------------------------------------------------------------------------------------- timing


def time_interleaved(calls: dict[str, Callable[[], Any]], rows: dict[str, Row], repeat: int,
                     max_seconds: float) -> None:
    """``repeat`` rounds of one timed call per system, in order; after ``max_seconds``, stop once 3 rounds are
    done. A system that fails mid-way keeps its error and leaves the rounds."""
    live = dict(calls)
    start = time.perf_counter()
    for done in range(1, max(1, repeat) + 1):
        for key, call in list(live.items()):
            t0 = time.perf_counter()
            try:
                call()
            except Exception as err:  # noqa: BLE001 - the row reports it
                rows[key].error, rows[key].times_ms = _error(err), []
                del live[key]
                continue
            rows[key].times_ms.append((time.perf_counter() - t0) * 1e3)
        if done >= 3 and time.perf_counter() - start > max_seconds:
            break


def onnx_reference(path: str, feeds: dict[str, np.ndarray]) -> Callable[[], list[np.ndarray]]:
    """The outputs of ONNX's own reference evaluator (NumPy, slow; untimed): the check when nothing else ran."""

    def run() -> list[np.ndarray]:
        from onnx.reference import ReferenceEvaluator

        evaluator = ReferenceEvaluator(path)
        return evaluator.run(None, {name: feeds[name] for name in evaluator.input_names})

    return run


def run_case(case: Case, builders: dict[str, Callable[[Row], Callable[[], Any]]], settings: Settings,
             fallback: Callable[[], list[np.ndarray]] | None = None) -> None:
    """Build and warm up every system of the case, check graphc's outputs (against onnxruntime's, else PyTorch's,
    else ``fallback()``'s), then time them interleaved."""
    calls, outputs = {}, {}
    for key, build in builders.items():
        row = case.rows[key] = Row("models", f"{case.model} b{case.batch}", SYSTEMS[key])
        try:
            start = time.perf_counter()
            call = build(row)
            row.extra["build_s"] = time.perf_counter() - start
            start = time.perf_counter()
            outputs[key] = _arrays(call())
            row.extra["first_call_ms"] = (time.perf_counter() - start) * 1e3
            for _ in range(settings.warmup - 1):
                call()
            calls[key] = call
        except Exception as err:  # noqa: BLE001 - the row reports it and the run goes on
            row.error = _error(err)
            row.extra["traceback"] = traceback.format_exc()
        _log(f"  {case.model} b{case.batch} {SYSTEMS[key]}: "
             + (f"error: {row.error}" if row.error else f"built in {row.extra['build_s']:.2f} s"))
    reference = next((k for k in ("onnxruntime", "torch") if k in outputs), None)
    if reference is None and "graphc" in outputs and fallback is not None:
        _log(f"  {case.model} b{case.batch}: checking against onnx.reference.ReferenceEvaluator (untimed)")
        try:
            outputs["onnx-reference"] = _arrays(fallback())
            reference = "onnx-reference"
        except Exception as err:  # noqa: BLE001 - then there is no check
            case.check = {"error": f"onnx.reference failed: {_error(err)}", "vs": "onnx-reference", "ok": None}
    if "graphc" in outputs and reference:
        try:
            diff, top = max_abs_diff(outputs["graphc"], outputs[reference])
            case.check = {"max_abs_diff": diff, "vs": reference, "max_abs_reference": top,
                          "ok": bool(diff <= CHECK_TOL * max(top, 1e-30))}
        except ValueError as err:
            case.check = {"error": str(err), "vs": reference, "ok": False}
    elif not case.check:
        case.check = {"error": "no reference ran", "ok": None}
    if "onnxruntime" in outputs and "torch" in outputs:
        with contextlib.suppress(ValueError):
            case.extra["onnxruntime_vs_torch_max_abs_diff"] = max_abs_diff(outputs["onnxruntime"],
                                                                           outputs["torch"])[0]
    del outputs
    time_interleaved(calls, case.rows, settings.repeat, settings.max_seconds)
    del calls
    gc.collect()  # a compiled network and its weights can be large: free them before the next case
    _log(f"  {case.model} b{case.batch}: " + ", ".join(
        f"{SYSTEMS[k]} {r.median_ms:.2f} ms" for k, r in case.rows.items() if r.median_ms))


# ------------------------------------------------------------------------------------------------ run


def run_models(settings: Settings, notes: list[str]) -> tuple[list[Case], dict[str, Any]]:
    """Run every torchvision model and ONNX file at every batch size; returns the cases and the JSON document.
    ``notes`` receives what is missing (already printed) and what the run noticed."""
    torch = tv = None
    if settings.models:
        torch, why = zoo.import_torch()
        tv, why = zoo.import_torchvision(torch) if torch is not None else (None, why)
        if tv is None:
            notes.append(f"{why}: the torchvision models are skipped (they need PyTorch and torchvision to be "
                         "built and exported; pip install torch torchvision)")
    ort, why_ort = zoo.import_onnxruntime()
    if ort is None:
        notes.append(f"{why_ort}: no onnxruntime column; graphc is checked against PyTorch instead (--onnx files: "
                     "against onnx.reference.ReferenceEvaluator, untimed); pip install onnxruntime")
    for note in notes:
        print(f"note: {note}", flush=True)
    if torch is not None:
        torch.set_num_threads(settings.threads)
        with contextlib.suppress(RuntimeError):  # only possible before torch's first parallel work
            torch.set_num_interop_threads(1)
    limits = blas_threads(settings.threads) if importable("threadpoolctl") else contextlib.nullcontext({})
    cases: list[Case] = []
    with limits as blas:
        for name in settings.models:
            cases += _torchvision_cases(name, settings, torch, tv, ort)
        for path, inputs in settings.onnx.items():
            cases += _onnx_cases(path, inputs, settings, ort)
    ctx = Context(repeat=settings.repeat, warmup=settings.warmup, threads=settings.threads, small=settings.small,
                  max_seconds=settings.max_seconds, frameworks=("onnxruntime", "torch"))
    info = {"graphc": f"import_model(inference=True), compile(backend='llvm', threads={settings.threads}"
                      + (", tune=True)" if settings.tune else ")"),
            "onnxruntime": f"intra_op_num_threads={settings.threads}, inter_op_num_threads=1",
            "torch": torch.get_num_threads() if torch is not None else None, **(blas or {})}
    meta = metadata(ctx, info)
    for name in ("onnxruntime", "onnx", "torchvision"):
        if name in sys.modules:
            meta["versions"][name] = getattr(sys.modules[name], "__version__", "?")
    meta.update(batches=settings.batches, resolution=settings.resolution, exporter=zoo.exporter_call(
        settings.exporter), cache_dir=settings.cache_dir, max_seconds=settings.max_seconds, notes=notes,
        check_tolerance=f"max_abs_diff <= {CHECK_TOL} * max_abs_reference")
    return cases, {"meta": meta, "results": [c.summary() for c in cases]}


def _torchvision_cases(name: str, settings: Settings, torch: Any, tv: Any, ort: Any) -> list[Case]:
    res = settings.resolution
    cases = [Case(name, b, "torchvision", f"3x{res}x{res}") for b in settings.batches]
    if tv is None:
        for case in cases:
            case.error = "skipped: needs PyTorch and torchvision"
        return cases
    _log(f"{name} ...")
    try:
        module = zoo.torch_model(torch, tv, name)
    except Exception as err:  # noqa: BLE001
        for case in cases:
            case.error = f"building the torchvision model failed: {_error(err)}"
        return cases
    for case in cases:
        batch = case.batch or 1
        path = case.onnx_path = zoo.export_path(torch, tv, name, batch, res, settings.exporter, settings.cache_dir)
        try:
            seconds = zoo.export_onnx(torch, module, path, batch, res, settings.exporter)
        except Exception as err:  # noqa: BLE001
            case.error = f"ONNX export failed: {_error(err)}"
            case.extra["traceback"] = traceback.format_exc()
            continue
        case.extra["export_s"] = seconds  # None: the cached file
        _log(f"  {name} b{batch}: {'cached ' if seconds is None else f'exported in {seconds:.1f} s to '}{path}")
        shapes = {"x": (batch, 3, res, res)}
        feeds = zoo.make_feeds([zoo.OnnxInput("x", shapes["x"], np.dtype(np.float32))], shapes)
        run_case(case, _builders(path, shapes, feeds, settings, ort, torch, module), settings)
    return cases


def _builders(path: str, shapes: dict[str, tuple[int, ...]], feeds: dict[str, np.ndarray], settings: Settings,
              ort: Any, torch: Any = None, module: Any = None) -> dict[str, Callable[[Row], Callable[[], Any]]]:
    """The systems of one case, by key, in timing order: each builds its callable (recording into its row)."""
    builders: dict[str, Callable[[Row], Callable[[], Any]]] = {
        "graphc": lambda row: build_graphc(path, shapes, feeds, settings.threads, row, settings.tune)}
    if ort is not None:
        builders["onnxruntime"] = lambda row: build_onnxruntime(ort, path, feeds, settings.threads, row)
    if module is not None:
        builders["torch"] = lambda row: build_torch(torch, module, feeds["x"])
    return builders


def _onnx_cases(path: str, inputs: list[zoo.OnnxInput], settings: Settings, ort: Any) -> list[Case]:
    """One case per batch size when the file's first input dimensions are symbolic; else one, the file's own."""
    stem = os.path.splitext(os.path.basename(path))[0]
    symbolic = any(i.dims and i.dims[0] is None for i in inputs)
    batches: list[int | None] = list(settings.batches) if symbolic else [None]
    cases = []
    _log(f"{path} ...")
    for batch in batches:
        case = Case(stem, batch, path, onnx_path=path)
        cases.append(case)
        try:
            shapes = zoo.input_shapes(inputs, batch or 1)
        except Exception as err:  # noqa: BLE001
            case.error = str(err)
            continue
        first = shapes[inputs[0].name] if inputs else ()
        case.batch = first[0] if first else None
        case.input = "x".join(map(str, first[1:])) or "-"
        feeds = zoo.make_feeds(inputs, shapes)
        run_case(case, _builders(path, shapes, feeds, settings, ort), settings, onnx_reference(path, feeds))
    return cases


# ---------------------------------------------------------------------------------------------- table


def format_table(cases: list[Case], settings: Settings) -> str:
    """The table: one line per (model, batch); a failed system's error on an indented line below it."""
    width = max([15, *(len(c.model) for c in cases)])
    head = (f"{'model':<{width}} {'batch':>5} {'input':>9} {'graphc ms':>10} {'ort ms':>10} {'torch ms':>10} "
            f"{'graphc/ort':>10} {'graphc/torch':>12} {'check max|Δ|':>16} {'compile s':>9} {'ort rounds':>11}")
    lines = [head, "-" * len(head)]
    failures = []
    for c in cases:
        start = f"{c.model:<{width}} {c.batch if c.batch is not None else '-':>5} {c.input:>9}"
        if c.error:
            lines.append(f"{start} {c.error}")
            continue
        times = [f"{m:.2f}" if m else ("error" if k in c.rows else "-")
                 for k in SYSTEMS for m in [c.median(k)]]
        ratio = [f"{r:.2f}" if r else "-" for r in (c.ratio("onnxruntime"), c.ratio("torch"))]
        check = "-"
        if "max_abs_diff" in c.check:
            flag = "" if c.check["ok"] else " MISMATCH"
            check = f"{c.check['max_abs_diff']:.1e} {CHECK_LABEL[c.check['vs']]}{flag}"
        elif c.check.get("ok") is False:
            check = "MISMATCH (shape)"
        compile_s = c.rows["graphc"].extra.get("build_s") if "graphc" in c.rows else None
        built = f"{compile_s:.2f}" if compile_s is not None and not c.rows["graphc"].error else "-"
        spread = c.ratio_spread("onnxruntime")
        rounds = f"{spread['q1']:.2f}-{spread['q3']:.2f}" if spread else "-"
        lines.append(f"{start} {times[0]:>10} {times[1]:>10} {times[2]:>10} {ratio[0]:>10} {ratio[1]:>12} "
                     f"{check:>16} {built:>9} {rounds:>11}")
        for key, row in c.rows.items():
            if row.error:
                lines.append(f"{'':<{width}}   {SYSTEMS[key]}: {row.error}")
                if key == "graphc":
                    failures.append(f"{c.model} b{c.batch}")
    t = settings.threads
    lines += ["", f"threads: {t} (graphc compile(threads={t}); onnxruntime intra_op_num_threads={t}, "
              f"inter_op_num_threads=1; torch.set_num_threads({t})). Medians of up to {settings.repeat} interleaved "
              f"rounds after {max(1, settings.warmup)} warm-up call(s).",
              "graphc/ort, graphc/torch: graphc's median ÷ that system's median (< 1: graphc is faster).",
              "ort rounds: the middle half (25th-75th percentile) of graphc's time ÷ onnxruntime's within each round: "
              "how far the ratio moved from round to round.",
              f"check: max |graphc - onnxruntime| over the outputs (without onnxruntime: 'torch' vs PyTorch, "
              f"'onnx-ref' vs onnx.reference); MISMATCH above {CHECK_TOL:g} × max |reference|.",
              "compile s: graphc's ONNX import + compile for the llvm backend (object code may come from graphc's "
              "cache)."]
    if any(c.source == "torchvision" and c.onnx_path for c in cases):
        lines.append(f"ONNX files: {zoo.exporter_call(settings.exporter)}, cached in {settings.cache_dir}")
    if failures:
        lines.append(f"graphc failed on: {', '.join(failures)}")
    return "\n".join(lines)
