"""``graphc bench``: the command runs small workloads and writes every number to JSON (no timing assertions)."""

from __future__ import annotations

import json

import pytest

import graphc.bench as bench
import graphc.cli as cli
from graphc.bench.gemm import bench_gemm

ROW_KEYS = {"workload", "case", "framework", "times_ms", "median_ms", "min_ms", "max_ms", "q1_ms", "q3_ms",
            "samples", "unit", "work", "error", "note", "extra", "vs_numpy", "vs_torch", "vs_jax"}


@pytest.fixture
def run_bench(tmp_path, monkeypatch, capsys):
    """Run ``graphc bench --small`` (graphc and NumPy only) and return (JSON document, printed table)."""
    monkeypatch.setenv("XLA_FLAGS", "")  # restored afterwards: the bench sets it for JAX's thread pool

    def run(*workloads: str, extra: tuple[str, ...] = ()) -> tuple[dict, str]:
        path = tmp_path / "bench.json"
        argv = ["bench", *workloads, "--small", "--repeat", "2", "--warmup", "1", "--frameworks", "none",
                "--json", str(path), *extra]
        assert cli.main(argv) == 0
        return json.loads(path.read_text()), capsys.readouterr().out

    return run


def test_fused_elementwise_and_gemm_json(run_bench):
    doc, out = run_bench("fused_elementwise", "gemm")
    meta = doc["meta"]
    assert meta["threads"] == 1 and meta["small"] is True and meta["frameworks"] == []
    assert meta["thread_control"]["numpy_blas"]  # threadpoolctl reports the limited BLAS pools
    rows = doc["rows"]
    assert all(ROW_KEYS <= set(r) for r in rows)
    frameworks = {r["framework"] for r in rows if r["workload"] == "fused_elementwise"}
    assert {"graphc-llvm", "graphc-numpy", "numpy expression", "memcpy (np.copyto)"} <= frameworks
    assert {r["case"] for r in rows if r["workload"] == "gemm"} == {"64x64 @ 64x64", "96x72 @ 72x80"}
    for r in rows:
        assert r["error"] is None, r
        assert r["samples"] == 2 and r["median_ms"] > 0
        assert r["unit"] in ("GB/s", "GFLOP/s") and r["work"] > 0
    gemm_numpy = [r for r in rows if r["workload"] == "gemm" and r["framework"] == "numpy"]
    assert all(r["vs_numpy"] == pytest.approx(1.0) for r in gemm_numpy)  # the gemm reference is numpy.matmul
    assert "workload" in out and "GB/s" in out and "GFLOP/s" in out and "threads: 1 for graphc's native code" in out
    assert "profiles" not in doc


def test_model_workload_backends_agree_on_first_loss(run_bench):
    doc, out = run_bench("mlp_train_step")
    rows = {r["framework"]: r for r in doc["rows"]}
    assert set(rows) == {"graphc-llvm", "graphc-numpy"}
    assert rows["graphc-numpy"]["vs_numpy"] == pytest.approx(1.0)
    # both backends start from the same weights, so the first step's loss matches
    llvm, ref = rows["graphc-llvm"]["extra"]["first_result"], rows["graphc-numpy"]["extra"]["first_result"]
    assert llvm == pytest.approx(ref, rel=1e-4)
    assert "b8 64-32-16-10" in out


def test_threads_apply_to_graphc_and_profile_reports_its_kernels(run_bench):
    from runtime.parallel import runtime

    doc, out = run_bench("mlp_train_step", "gemm", extra=("--threads", "2", "--profile"))
    assert doc["meta"]["threads"] == 2
    profiles = doc["profiles"]
    assert set(profiles) == {"mlp_train_step / b8 64-32-16-10", "gemm / 64x64 @ 64x64", "gemm / 96x72 @ 72x80"}
    for report in profiles.values():
        assert report["threads"] == (2 if runtime() else 1)  # the programs were compiled for --threads
        assert report["kernels"] and all(k["seconds"] > 0 for k in report["kernels"])
        assert report["peak"]["fma_gflops"] > 0
    gemm = profiles["gemm / 96x72 @ 72x80"]["kernels"]
    assert gemm[0]["flops"] == 2 * 96 * 72 * 80
    assert "== mlp_train_step / b8 64-32-16-10" in out and "GFLOP/s" in out


def test_failing_row_is_reported_and_the_run_goes_on(capsys):
    ctx = bench.Context(repeat=2, warmup=1)

    def broken():
        raise NotImplementedError("cannot lower op frobnicate")

    ctx.measure("w", "c", "graphc-llvm", broken)
    ctx.measure("w", "c", "graphc-numpy", lambda: lambda: None)
    table = bench.format_table(ctx.rows, threads=1)
    assert "graphc-llvm" in table and "error: NotImplementedError: cannot lower op frobnicate" in table
    assert ctx.rows[1].error is None and len(ctx.rows[1].times_ms) == 2


def test_ratios_are_reference_over_row():
    rows = [bench.Row("w", "c", "graphc-numpy", [4.0]), bench.Row("w", "c", "graphc-llvm", [1.0, 2.0, 3.0]),
            bench.Row("w", "c", "torch (eager)", [6.0]), bench.Row("w", "c", "jax (jit)", [1.0])]
    rel = bench.ratios(rows)
    assert rel[1] == {"vs_numpy": 2.0, "vs_torch": 3.0, "vs_jax": 0.5}
    assert rel[0]["vs_numpy"] == 1.0


def test_unknown_workload_is_a_usage_error(capsys):
    assert cli.main(["bench", "no_such_workload"]) == 2
    assert "unknown workload" in capsys.readouterr().err


def test_gemm_kernel_benchmark_small():
    result = bench_gemm(32, 24, 16, repeats=2, warmup=1)
    assert result["shape"] == "32x16 @ 16x24"
    assert result["max_rel_err"] < 1e-4
    assert result["ms_graphc"] > 0 and result["gflops_numpy"] > 0


def test_context_has_its_own_module():
    """Workloads, the runner and the CLI share one Context type, defined in graphc.bench.context."""
    from graphc.bench import context, runner, workloads

    assert bench.Context is context.Context and bench.Row is context.Row
    assert workloads.Context is context.Context and runner.Context is context.Context
