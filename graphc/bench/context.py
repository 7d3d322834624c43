"""The run settings and the measurement record every workload writes into: :class:`Context` and :class:`Row`.

This module imports nothing of graphc: workloads, the runner and the CLI all import it, never the other way round.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class Row:
    """One (workload, case, framework) measurement; ``work`` is FLOPs or bytes per call (metric = work / median)."""

    workload: str
    case: str
    framework: str
    times_ms: list[float] = field(default_factory=list)
    unit: str = ""
    work: float = 0.0
    error: str | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median_ms(self) -> float | None:
        return float(np.median(self.times_ms)) if self.times_ms else None

    @property
    def metric(self) -> float | None:
        med = self.median_ms
        return self.work / (med * 1e-3) / 1e9 if med and self.work else None

    def summary(self) -> dict[str, Any]:
        """The row as JSON: its fields, the statistics of its samples and its metric (e.g. ``gflop_per_s``)."""
        t = np.asarray(self.times_ms) if self.times_ms else None
        stats = {} if t is None else {"median_ms": float(np.median(t)), "min_ms": float(t.min()),
                                      "max_ms": float(t.max()), "q1_ms": float(np.percentile(t, 25)),
                                      "q3_ms": float(np.percentile(t, 75)), "samples": int(t.size)}
        metric = {f"{self.unit.replace('/', '_per_').lower()}": self.metric} if self.unit and self.metric else {}
        return {**asdict(self), **stats, **metric}


@dataclass
class Context:
    """Run settings shared by all workloads, and the rows measured so far."""

    repeat: int = 10
    warmup: int = 2
    threads: int = 1
    small: bool = False
    max_seconds: float = 10.0
    frameworks: tuple[str, ...] = ("torch", "jax")
    profile: bool = False  # also profile graphc's native programs kernel by kernel (``Program.profile``)
    rows: list[Row] = field(default_factory=list)
    profiles: dict[str, Any] = field(default_factory=dict)  # "workload / case" -> runtime.profile.Profile

    @property
    def graphc_options(self) -> dict[str, Any]:
        """Options of every graphc compile in the run: ``--threads`` applies to graphc's native code too."""
        return {"threads": self.threads}

    def add_profile(self, workload: str, case: str, make: Callable[[], Any]) -> None:
        """With ``--profile``: ``make()`` returns a Profile of the case's native program (failures are noted)."""
        if not self.profile:
            return
        try:
            self.profiles[f"{workload} / {case}"] = make()
        except Exception as err:  # noqa: BLE001 - a profile is extra information; the run goes on
            self.profiles[f"{workload} / {case}"] = f"{type(err).__name__}: {err}"

    def measure(self, workload: str, case: str, framework: str, make: Callable[[], Callable[[], Any]],
                unit: str = "", work: float = 0.0, note: str = "", repeat: int | None = None,
                warmup: int | None = None) -> Row:
        """Build the callable with ``make()`` (not timed), warm it up and time it; any failure becomes the row's
        error, so one unsupported op never stops the benchmark."""
        row = Row(workload, case, framework, unit=unit, work=work, note=note)
        self.rows.append(row)
        try:
            call = make()
            first = None
            for i in range(self.warmup if warmup is None else warmup):
                result = call()
                first = result if i == 0 else first
            if first is not None and np.ndim(to_numpy(first)) == 0:
                row.extra["first_result"] = float(to_numpy(first))
            row.times_ms = time_calls(call, repeat or self.repeat, self.max_seconds)
        except Exception as err:  # noqa: BLE001 - the row reports it and the run goes on
            row.error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:160]
            row.extra["traceback"] = traceback.format_exc()  # the JSON keeps where it failed
        _progress(row)
        return row

    def has(self, framework: str) -> bool:
        """Whether ``framework`` (torch, jax) was asked for and can be imported."""
        return framework in self.frameworks and importable(framework)


def time_calls(call: Callable[[], Any], repeat: int, max_seconds: float) -> list[float]:
    """Wall times (ms) of ``repeat`` calls; stops early after ``max_seconds`` once 3 samples exist."""
    times: list[float] = []
    start = time.perf_counter()
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1e3)
        if len(times) >= 3 and time.perf_counter() - start > max_seconds:
            break
    return times


def median_ms(call: Callable[[], Any], repeat: int = 20) -> float:
    """Median wall time (ms) of ``repeat`` calls after one warm-up call (the examples' timing)."""
    call()
    return float(np.median(time_calls(call, repeat, float("inf"))))


def to_numpy(value: Any) -> Any:
    """A framework's result (torch / jax array, NumPy array or scalar) as a NumPy array."""
    return value.numpy() if hasattr(value, "numpy") and not isinstance(value, np.ndarray) else np.asarray(value)


def importable(name: str) -> bool:
    """Whether ``import name`` works (a broken install counts as absent)."""
    try:
        __import__(name)
    except Exception:  # noqa: BLE001 - a broken install counts as absent
        return False
    return True


def _progress(row: Row) -> None:
    status = f"error: {row.error}" if row.error else f"{row.median_ms:.3f} ms"
    print(f"  {row.workload:<18} {row.case:<26} {row.framework:<20} {status}", file=sys.stderr, flush=True)
