"""graphc.distributed in one process without MPI: allreduce is the identity, DistributedOptimizer's step equals the
wrapped optimizer's (bit for bit on the interpreter; fused buckets: one native call per step, one MPI call per
bucket), sharding, bucketing, the launcher's checks and the error naming the extra. Nothing here starts MPI."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import graphc as gc
import graphc.distributed as dist
from graphc.cli import main
from graphc.distributed.keras import FitShards
from graphc.distributed.optimizer import buckets
from ops.registry import apply
from tests.distributed.mpi_helpers import HAVE_MPI, ROOT, environment


def test_no_mpi_means_one_process():
    assert "mpi4py.MPI" not in sys.modules  # the tests of this file must not start MPI in the pytest process
    assert (dist.rank(), dist.size(), dist.local_rank(), dist.is_root()) == (0, 1, 0, True)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(dist.allreduce(x), x)
    assert dist.allreduce(2.5, op="sum") == 2.5 and dist.allreduce(np.arange(3), op="mean").dtype == np.float64
    with pytest.raises(gc.GraphcError, match="op must be one of"):
        dist.allreduce(x, op="max")


@pytest.mark.parametrize("backend", ["numpy", "numpy-plan", "llvm"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_allreduce_op_is_the_identity_in_one_process(backend, dtype):
    g = gc.Graph("one")
    x = g.input("x", (3, 4), dtype)
    outputs = {"mean": dist.allreduce(x * 2.0), "sum": apply("allreduce", x, op="sum"), "grad": gc.grad(
        gc.sum(dist.allreduce(x) * x), [x])[0]}
    feed = np.random.default_rng(0).standard_normal((3, 4)).astype(dtype)
    got = gc.compile(outputs, backend=backend)(x=feed)
    np.testing.assert_array_equal(got["mean"], feed * 2)
    np.testing.assert_array_equal(got["sum"], feed)
    np.testing.assert_allclose(got["grad"], 2 * feed, rtol=1e-6)


def _mlp(seed: int = 0):
    g = gc.Graph("mlp")
    x, y = g.input("x", (8, 12)), g.input("y", (8,), "int64")
    w1 = g.param("w1", gc.init.he_normal((12, 16), rng=seed))
    b1 = g.param("b1", gc.init.normal((16,), rng=seed + 1))
    w2 = g.param("w2", gc.init.glorot_uniform((16, 4), rng=seed + 2))
    return g, gc.softmax_cross_entropy(gc.relu(x @ w1 + b1) @ w2, y)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_distributed_optimizer_equals_the_wrapped_one_in_one_process(backend):
    rng = np.random.default_rng(1)
    feeds = [{"x": rng.standard_normal((8, 12)).astype(np.float32), "y": rng.integers(0, 4, 8)} for _ in range(3)]
    states = []
    for wrap in (False, True):
        g, loss = _mlp()
        opt = gc.optim.Adam(1e-2)
        updates = (dist.DistributedOptimizer(opt, bucket_bytes=512) if wrap else opt).minimize(loss)
        step = gc.compile({"loss": loss}, updates=updates, backend=backend)
        for f in feeds:
            step(**f)
        states.append({k: v.copy() for k, v in g.state.items()})
        if wrap and backend == "llvm":  # w1 (768 B) alone, b1 + w2 packed: two MPI calls inside the one step call
            assert step.llvm_ir().count('call i32 @"graphc_rt_allreduce"') == 2
    for name in states[0]:
        if backend == "numpy":  # the interpreter: the same operations, the same bits
            np.testing.assert_array_equal(states[1][name], states[0][name], err_msg=name)
        else:  # the packed gradients change kernel boundaries, so LLVM may round a fused sum differently (1 ulp)
            np.testing.assert_allclose(states[1][name], states[0][name], rtol=1e-6, atol=1e-8, err_msg=name)


def test_buckets_are_consecutive_gradients_of_one_dtype_within_the_byte_limit():
    g = gc.Graph("b")
    grads = [g.input(f"g{i}", shape, dtype) for i, (shape, dtype) in enumerate(
        [((200,), "float32"), ((10,), "float32"), ((10,), "float64"), ((100,), "float32"), ((10,), "float64")])]
    assert buckets(grads, 512) == [[0], [1, 3], [2, 4]]
    assert buckets(grads, 1 << 20) == [[0, 1, 3], [2, 4]]
    with pytest.raises(gc.GraphcError, match="bucket_bytes"):
        dist.DistributedOptimizer(gc.optim.SGD(0.1), bucket_bytes=0)


def test_shards_are_equal_disjoint_and_cover_the_epoch():
    order = np.random.default_rng(0).permutation(11)
    shards = [FitShards(r, 3).shard(order) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4] == [FitShards(r, 3).shard_length(11) for r in range(3)]
    assert set(np.concatenate(shards)) == set(range(11))  # one example repeated: the padding
    np.testing.assert_array_equal(np.stack(shards, axis=1).reshape(-1)[:11], order)  # step k: order[3k:3k+3]


def test_ring_allreduce_model():
    assert dist.ring_allreduce_seconds(10**9, 1, 10) == 0
    assert dist.ring_allreduce_seconds(10**9, 2, 8) == pytest.approx(1.0)  # 2·(1/2)·8 Gbit / 8 Gbit/s
    assert dist.ring_allreduce_seconds(10**9, 4, 8) == pytest.approx(1.5)


def test_init_without_mpi4py_names_the_extra():
    code = "import sys; sys.modules['mpi4py'] = None\nimport graphc.distributed as d\nd.init()"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                            env=environment())
    assert result.returncode != 0 and "pip install 'graphc[distributed]'" in result.stderr


def test_launch_checks_the_environment(tmp_path, capsys):
    assert main(["launch", "-n", "2", str(tmp_path / "missing.py")]) == 2
    assert "no such script" in capsys.readouterr().err
    script = tmp_path / "train.py"
    script.write_text("print('hi')\n")
    assert main(["launch", "-n", "2", "--mpiexec", "no-such-mpiexec", str(script)]) == 2
    assert "not an executable" in capsys.readouterr().err
    if HAVE_MPI:
        assert main(["launch", "-n", "3", "--threads", "2", "--dry-run", str(script), "--", "--epochs", "1"]) == 0
        line = capsys.readouterr().out.strip()
        assert line.endswith(f"-n 3 {sys.executable} {script} --epochs 1") and "mpiexec" in line
