"""Programs called from many threads: every call sees a consistent state and applies all of its updates before
another call of any program on the same graph reads it; Ctrl-C never leaves a step half applied."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import graphc as gc

BACKENDS = ["llvm", "numpy", "numpy-plan"]
THREADS, STEPS = 4, 25
SIZE = 1 << 19  # large enough that copying an update takes a while (NumPy releases the GIL meanwhile)


def counter_model(backend: str, size: int = SIZE):
    """A training step w ← w − x·lr (lr = 1, x = 1: exact in float64, so every serial order ends at −steps) and an
    evaluation program reading w (a torn read shows as a vector whose elements differ)."""
    g = gc.Graph("counter")
    x = g.input("x", (size,), "float64")
    w = g.param("w", np.zeros(size), dtype="float64")
    loss = (w * x).sum()
    (dw,) = gc.grad(loss, [w])
    step = gc.compile({"loss": loss}, updates={w: w - dw}, backend=backend)
    look = gc.compile({"w": w * 1.0, "total": w.sum()}, backend=backend)
    return g, step, look


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_training_and_evaluation_match_a_serial_order(backend):
    g, step, look = counter_model(backend)
    ones = np.ones(SIZE)
    seen: list[np.ndarray] = []
    errors: list[BaseException] = []

    def train() -> None:
        try:
            for _ in range(STEPS):
                loss = step(x=ones)["loss"]
                assert float(loss) <= 0.0 and float(loss) == float(loss)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    def evaluate() -> None:
        try:
            for _ in range(STEPS):
                seen.append(look()["w"])
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=train) for _ in range(THREADS)] + [threading.Thread(target=evaluate)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    np.testing.assert_array_equal(g.state["w"], np.full(SIZE, -float(THREADS * STEPS)))
    for w in seen:  # every read is one state between two steps: all elements equal, an integer count of steps
        assert np.all(w == w[0]) and w[0] == int(w[0]) and -THREADS * STEPS <= w[0] <= 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_program_called_concurrently_returns_each_callers_own_result(backend):
    g = gc.Graph("pure")
    x = g.input("x", (512,))
    prog = gc.compile({"y": gc.tanh(x) * 2.0 + x}, backend=backend)
    results: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        feed = np.full(512, i / 10, np.float32)
        for _ in range(20):
            out = prog(x=feed)["y"]
            assert np.allclose(out, np.tanh(feed) * 2 + feed, atol=1e-6), i
        results[i] = out

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(6))


SIGINT_SCRIPT = """
    import os, random, signal, threading
    import numpy as np
    import graphc as gc

    g = gc.Graph("steps")
    ws = [g.param(f"w{i}", np.zeros(1 << 21), dtype="float64") for i in range(6)]  # large: a long commit
    x = g.input("x", (1 << 21,), "float64")
    loss = sum((w * x).sum() for w in ws)
    grads = gc.grad(loss, ws)
    step = gc.compile({"loss": loss}, updates={w: w - d for w, d in zip(ws, grads)}, backend=BACKEND)
    ones = np.ones(1 << 21)
    rng = random.Random(0)
    torn = steps = 0
    for _ in range(8):  # eight interrupts, each at a different point of a step
        threading.Timer(rng.uniform(0.05, 0.25), lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        try:
            while True:
                step(x=ones)
                steps += 1
        except KeyboardInterrupt:
            pass
        values = {float(g.state[w.name][i]) for w in ws for i in (0, -1)}
        torn += len(values) > 1
    print(torn, steps)
"""


@pytest.mark.parametrize("backend", ["llvm", "numpy"])
def test_ctrl_c_never_leaves_a_step_half_applied(backend):
    script = textwrap.dedent(SIGINT_SCRIPT).replace("BACKEND", repr(backend))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.returncode == 0, out.stderr
    torn, steps = map(int, out.stdout.split())
    assert torn == 0 and steps > 0  # after every interrupt all params moved the same number of steps


def test_state_lock_is_per_graph_and_reentrant():
    g1, step1, _ = counter_model("numpy", size=8)
    g2, step2, _ = counter_model("numpy", size=8)
    assert g1.state_lock is not g2.state_lock
    with g1.state_lock:  # a callback holding the lock may still call programs of the same graph
        step1(x=np.ones(8))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


SMALL_STACK_SCRIPT = """
    import threading
    import numpy as np
    import graphc as gc

    g = gc.Graph("net")
    x = g.input("x", (8, 16, 32, 32))
    w = g.param("w", np.random.default_rng(0).standard_normal((32, 16, 3, 3)).astype(np.float32) * 0.1)
    v = g.param("v", np.random.default_rng(1).standard_normal((512, 384)).astype(np.float32) * 0.05)
    h = gc.relu(gc.conv2d(x, w, padding=1))                     # im2col columns: ~600 KB per image
    y = gc.reshape(h, (8, -1))[:, :512] @ v                     # a GEMM with a full packed panel (~500 KB)
    loss = gc.tanh(y).sum()
    grads = gc.grad(loss, [w, v])                               # conv backward (input and weight) too
    prog = gc.compile({"loss": loss, "dw": grads[0], "dv": grads[1]})  # compiled on the main thread
    feeds = {"x": np.random.default_rng(2).standard_normal((8, 16, 32, 32)).astype(np.float32)}
    want = prog(**feeds)
    got = {}
    threading.stack_size(STACK)
    t = threading.Thread(target=lambda: got.update(prog(**feeds)))
    t.start()
    t.join()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])
    print("ok")
"""


@pytest.mark.parametrize("stack", [256 * 1024, 128 * 1024])
def test_native_code_runs_in_small_stack_threads(stack):
    """Kernels take their scratch (im2col columns, packed GEMM panels) from planned memory, never from the stack:
    a thread with a 256 KiB (macOS) or 128 KiB (musl) stack runs conv and GEMM programs."""
    script = textwrap.dedent(SMALL_STACK_SCRIPT).replace("STACK", str(stack))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.returncode == 0 and out.stdout.strip() == "ok", (out.returncode, out.stderr[-2000:])
