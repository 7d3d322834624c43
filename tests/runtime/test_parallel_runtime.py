"""The thread controls of native programs (``threads=``, ``GRAPHC_NUM_THREADS``, the affinity mask, the single-thread
fallback without libgomp), concurrent calls of one multi-threaded program from several Python threads, and the
per-kernel profiler."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import graphc as gc
import runtime.parallel as parallel
from graphc.ir import GraphcError
from graphc.nn import Dense, Sequential

needs_gomp = pytest.mark.skipif(not parallel.runtime(), reason="libgomp is not installed")


def _matmul_program(**options):
    g = gc.Graph("mm")
    a, b = g.input("a", (96, 200)), g.input("b", (200, 150))
    return gc.compile(gc.relu(a @ b), **options)


def _feeds(rng):
    return {"a": rng.standard_normal((96, 200)).astype(np.float32),
            "b": rng.standard_normal((200, 150)).astype(np.float32)}


@needs_gomp
def test_default_is_the_affinity_mask(monkeypatch):
    monkeypatch.delenv("GRAPHC_NUM_THREADS", raising=False)
    assert _matmul_program(cache=False).threads == len(os.sched_getaffinity(0))


@needs_gomp
def test_environment_variable_and_argument(monkeypatch):
    monkeypatch.setenv("GRAPHC_NUM_THREADS", "3")
    assert _matmul_program(cache=False).threads == 3
    assert _matmul_program(cache=False, threads=2).threads == 2  # the argument wins


@pytest.mark.parametrize("text", ["0", "-2", "two", "1.5"])
def test_bad_environment_variable_is_a_clear_error(monkeypatch, text):
    monkeypatch.setenv("GRAPHC_NUM_THREADS", text)
    with pytest.raises(GraphcError, match="GRAPHC_NUM_THREADS must be a positive integer"):
        _matmul_program(cache=False)


@pytest.mark.parametrize("backend", ["llvm", "numpy", "numpy-plan"])
@pytest.mark.parametrize("value", [0, -1, 1.5, True, "2"])
def test_bad_threads_argument_is_a_clear_error(backend, value):
    with pytest.raises(GraphcError, match="threads must be a positive int"):
        _matmul_program(backend=backend, threads=value)


def test_an_affinity_mask_of_one_core_gives_one_thread():
    code = textwrap.dedent("""
        import os
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        os.environ.pop("GRAPHC_NUM_THREADS", None)
        import graphc as gc
        g = gc.Graph("t"); x = g.input("x", (4,))
        print(gc.compile(x * 2.0, cache=False).threads)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert out.stdout.strip() == "1"


def test_without_libgomp_programs_run_on_one_thread_and_say_so(monkeypatch, rng):
    monkeypatch.setattr(parallel, "runtime", lambda: False)
    with pytest.warns(RuntimeWarning, match="libgomp"):
        prog = _matmul_program(cache=False, threads=4)
    assert prog.threads == 1
    assert "graphc_rt_parallel" not in prog.module.ir_text
    feeds = _feeds(rng)
    np.testing.assert_allclose(prog(**feeds), np.maximum(feeds["a"] @ feeds["b"], 0), rtol=1e-4, atol=1e-4)


@needs_gomp
def test_only_multi_threaded_programs_reference_the_runtime():
    assert "graphc_rt_parallel" not in _matmul_program(cache=False, threads=1).module.ir_text
    assert "graphc_rt_parallel" in _matmul_program(cache=False, threads=2).module.ir_text


@needs_gomp
def test_concurrent_calls_of_one_multi_threaded_program(rng):
    """Four Python threads call one 2-thread training step and one evaluation program on the same graph: every
    call runs on its own OpenMP team, calls on one graph are serialized by its state lock, and the final weights
    are the serial result (the steps commute: each subtracts the same exact amount)."""
    g = gc.Graph("counter")
    x = g.input("x", (256, 300))
    w = g.param("w", np.zeros((300, 64), np.float32))
    loss = gc.sum(x @ w)
    (dw,) = gc.grad(loss, [w])
    step = gc.compile({"loss": loss}, updates={w: w - dw * 0.0078125}, threads=2, cache=False)
    look = gc.compile({"total": gc.sum(w)}, threads=2, cache=False)
    ones = np.ones((256, 300), np.float32)
    errors: list[BaseException] = []
    seen: list[float] = []

    def worker() -> None:
        try:
            for _ in range(10):
                step(x=ones)
                seen.append(float(look()["total"]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    np.testing.assert_array_equal(g.state["w"], np.full((300, 64), -40 * 256 * 0.0078125, np.float32))
    per_step = 256 * 0.0078125 * 300 * 64
    assert all(float(v / per_step).is_integer() for v in seen)  # never a half-applied update


@needs_gomp
def test_model_compile_takes_threads(rng):
    model = Sequential([Dense(32, activation="relu", input_shape=(20,)), Dense(3)])
    model.compile(loss="mse", optimizer="sgd", threads=2)
    x, y = rng.standard_normal((64, 20)).astype(np.float32), rng.standard_normal((64, 3)).astype(np.float32)
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    prog, _, _ = model._program("train", 64)
    assert prog.threads == 2
    with pytest.raises(GraphcError, match="threads must be a positive int"):
        model.compile(loss="mse", threads=0)


# ------------------------------------------------------------------------------------------------ profiler

def _train_step(threads: int):
    rng = np.random.default_rng(0)
    g = gc.Graph("profiled")
    x, y = g.input("x", (64, 100)), g.input("y", (64,), "int64")
    w1 = g.param("w1", (rng.standard_normal((100, 80)) * 0.1).astype(np.float32))
    w2 = g.param("w2", (rng.standard_normal((80, 10)) * 0.1).astype(np.float32))
    loss = gc.softmax_cross_entropy(gc.relu(x @ w1) @ w2, y)
    prog = gc.compile({"loss": loss}, updates=gc.optim.SGD(0.1).minimize(loss), threads=threads, cache=False)
    feeds = {"x": rng.standard_normal((64, 100)).astype(np.float32), "y": rng.integers(0, 10, 64)}
    return g, prog, feeds


@pytest.mark.parametrize("threads", [1, 2])
def test_profile_reports_every_kernel_with_its_work(threads):
    g, prog, feeds = _train_step(threads)
    report = prog.profile(feeds, repeat=3)
    assert report.threads == prog.threads
    assert [k.name for k in report.kernels] == [k.name for k in prog.plan.kernels]
    assert all(k.seconds > 0 and k.bytes > 0 for k in report.kernels)
    first = next(k for k in report.kernels if "matmul" in k.ops)
    assert first.flops >= 2 * 64 * 100 * 80
    assert first.gflops == pytest.approx(first.flops / first.seconds / 1e9)
    assert report.peak is not None and report.peak.fma_gflops > 0 and report.peak.copy_gbps > 0
    fma, bw = report.fraction_of_peak(first)
    assert fma == pytest.approx(first.gflops / report.peak.fma_gflops)
    assert report.kernel_seconds <= report.call_seconds * 1.5
    text = report.format()
    assert first.name in text and "GFLOP/s" in text
    data = report.as_dict()
    assert len(data["kernels"]) == len(report.kernels) and data["threads"] == prog.threads


def test_profile_runs_the_program_as_a_call_does():
    g, prog, feeds = _train_step(1)
    _, reference, _ = _train_step(1)
    prog.profile(repeat=2, peak=False, **feeds)  # feeds as keywords; one warm-up + 2 timed calls = 3 steps
    for _ in range(3):
        reference(**feeds)
    np.testing.assert_array_equal(g.state["w1"], reference.graph.state["w1"])


@pytest.mark.parametrize("repeat", [0, -1, 2.5, True])
def test_profile_rejects_a_bad_repeat(repeat):
    _, prog, feeds = _train_step(1)
    with pytest.raises(GraphcError, match="repeat must be a positive int"):
        prog.profile(feeds, repeat=repeat)


def test_profile_validates_feeds_like_a_call():
    _, prog, feeds = _train_step(1)
    with pytest.raises(GraphcError):
        prog.profile({"x": feeds["x"]}, repeat=1)
