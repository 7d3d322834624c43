"""``graphc bench models``: whole networks on graphc, onnxruntime and PyTorch from the same ONNX file.

The ``--onnx`` tests build a tiny network with ``onnx.helper`` and need neither PyTorch nor onnxruntime (one test
hides them even where they are installed); the torchvision test runs where torch and torchvision import.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pytest

import graphc.cli as cli
from graphc.bench import zoo, zoo_run
from graphc.bench.context import Row

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

SYSTEM_KEYS = {"workload", "case", "framework", "times_ms", "median_ms", "min_ms", "max_ms", "samples", "error",
               "extra"}


def tiny_model(path, batch="N", height=8, domain=""):
    """Conv 3x3 (3 -> 4) + Relu + GlobalAveragePool + Flatten + Gemm (4 -> 5); ``batch`` a dim_param or an int."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
             for name, shape in (("w", (4, 3, 3, 3)), ("b", (4,)), ("fw", (5, 4)), ("fb", (5,)))]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], domain=domain),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                            [batch, 3, height, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 5])], inits)
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets)
    if not domain:
        onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


@pytest.fixture
def bench_models(tmp_path, monkeypatch, capsys):
    """Run ``graphc bench models ARGS --json`` in-process; returns (exit status, JSON document, stdout, stderr)."""
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")  # never re-executed: sys.modules patches must hold

    def run(*args: str) -> tuple[int, dict, str, str]:
        path = tmp_path / "models.json"
        code = cli.main(["bench", "models", *args, "--json", str(path)])
        out, err = capsys.readouterr()
        return code, json.loads(path.read_text()) if code == 0 else {}, out, err

    return run


def table_line(out: str, model: str, batch: int) -> list[str]:
    """The cells of the table line of (model, batch)."""
    for line in out.splitlines():
        cells = line.split()
        if cells[:2] == [model, str(batch)]:
            return cells
    raise AssertionError(f"no table line for {model} b{batch} in:\n{out}")


def test_onnx_file_without_torch_or_onnxruntime(bench_models, tmp_path, monkeypatch):
    for name in ("torch", "torchvision", "onnxruntime"):
        monkeypatch.setitem(sys.modules, name, None)  # `import name` raises ImportError
    path = tiny_model(tmp_path / "tiny.onnx")
    code, doc, out, err = bench_models("--onnx", path, "--batches", "1,3", "--repeat", "3", "--warmup", "1")
    assert code == 0
    assert "note: onnxruntime cannot be imported" in out and "pip install onnxruntime" in out
    for batch in (1, 3):
        cells = table_line(out, "tiny", batch)
        assert cells[2] == "3x8x8" and float(cells[3]) > 0  # graphc's median in ms
        assert cells[4:8] == ["-", "-", "-", "-"]  # no onnxruntime, no PyTorch: no times, no ratios
        assert float(cells[8]) < 1e-4 and cells[9] == "onnx-ref"  # checked against ONNX's reference evaluator
        assert cells[11] == "-"  # no per-round ratios without onnxruntime
    results = doc["results"]
    assert [(r["model"], r["batch"], r["input"]) for r in results] == [("tiny", 1, "3x8x8"), ("tiny", 3, "3x8x8")]
    for r in results:
        assert r["error"] is None and r["source"] == r["onnx"] == path
        assert set(r["systems"]) == {"graphc"}
        graphc = r["systems"]["graphc"]
        assert SYSTEM_KEYS <= set(graphc) and graphc["error"] is None and graphc["framework"] == "graphc-llvm"
        assert graphc["samples"] == 3 and len(graphc["times_ms"]) == 3 and all(t > 0 for t in graphc["times_ms"])
        assert graphc["min_ms"] <= graphc["median_ms"] <= graphc["max_ms"]
        assert graphc["extra"]["compile_s"] > 0 and graphc["extra"]["opset"] == 17
        check = r["check"]
        assert check["vs"] == "onnx-reference" and check["ok"] is True
        assert 0 <= check["max_abs_diff"] < 1e-4 < check["max_abs_reference"]
        assert r["graphc_over_onnxruntime"] is None and r["graphc_over_torch"] is None
        assert r["graphc_over_onnxruntime_per_round"] is None and r["graphc_over_torch_per_round"] is None
    meta = doc["meta"]
    assert meta["threads"] == 1 and meta["repeat"] == 3 and meta["batches"] == [1, 3]
    assert any("onnxruntime" in n for n in meta["notes"])
    assert "tiny b3 graphc-llvm: built" in err  # progress goes to stderr


def test_tune_measures_the_conv_layers_first(bench_models, tmp_path, monkeypatch):
    import runtime.conv_tune as conv_tune

    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GRAPHC_CACHE", "1")
    path = tiny_model(tmp_path / "tiny.onnx")
    code, doc, out, _ = bench_models("--onnx", path, "--batches", "2", "--repeat", "3", "--warmup", "1", "--tune")
    assert code == 0
    assert doc["meta"]["thread_control"]["graphc"].endswith("tune=True)")
    assert doc["results"][0]["check"]["ok"] is True
    (entry,) = conv_tune.table_entries().values()  # the one conv, measured for batch 2 on one thread
    assert entry["algorithm"] in entry["ms"] and len(entry["ms"]) >= 2


def test_onnx_file_against_onnxruntime(bench_models, tmp_path):
    pytest.importorskip("onnxruntime")
    path = tiny_model(tmp_path / "tiny.onnx")
    code, doc, out, _ = bench_models("--onnx", path, "--batches", "2", "--repeat", "4", "--threads", "2")
    assert code == 0
    (r,) = doc["results"]
    assert set(r["systems"]) == {"graphc", "onnxruntime"} and r["batch"] == 2
    graphc, ort = r["systems"]["graphc"], r["systems"]["onnxruntime"]
    assert graphc["samples"] == ort["samples"] == 4 and graphc["median_ms"] > 0 and ort["median_ms"] > 0
    assert r["graphc_over_onnxruntime"] == pytest.approx(graphc["median_ms"] / ort["median_ms"])
    assert r["check"]["vs"] == "onnxruntime" and r["check"]["max_abs_diff"] < 1e-4 and r["check"]["ok"]
    cells = table_line(out, "tiny", 2)
    assert float(cells[3]) > 0 and float(cells[4]) > 0 and cells[5] == "-"
    assert float(cells[6]) == pytest.approx(r["graphc_over_onnxruntime"], abs=0.006)
    assert float(cells[8]) < 1e-4 and cells[9] == "ort"
    rounds = [g / o for g, o in zip(graphc["times_ms"], ort["times_ms"])]  # each round's graphc ÷ onnxruntime
    spread = r["graphc_over_onnxruntime_per_round"]
    assert spread["rounds"] == 4 and spread["median"] == pytest.approx(float(np.median(rounds)))
    assert min(rounds) <= spread["q1"] <= spread["median"] <= spread["q3"] <= max(rounds)
    assert cells[11] == f"{spread['q1']:.2f}-{spread['q3']:.2f}" and r["graphc_over_torch_per_round"] is None
    assert "ort rounds: the middle half" in out
    assert doc["meta"]["threads"] == 2 and "intra_op_num_threads=2" in doc["meta"]["thread_control"]["onnxruntime"]


def test_per_round_ratios_pair_each_round_and_skip_failed_systems():
    case = zoo_run.Case("net", 1, "torchvision")
    case.rows["graphc"] = Row("models", "net b1", "graphc-llvm", times_ms=[10.0, 40.0, 12.0, 30.0])
    case.rows["onnxruntime"] = Row("models", "net b1", "onnxruntime", times_ms=[5.0, 20.0, 12.0, 10.0])
    case.rows["torch"] = Row("models", "net b1", "torch (eager)", error="RuntimeError: no", times_ms=[])
    assert case.round_ratios("onnxruntime") == [2.0, 2.0, 1.0, 3.0]  # the rounds' own ratios, in order
    assert case.ratio_spread("onnxruntime") == {"median": 2.0, "q1": 1.75, "q3": 2.25, "rounds": 4}
    assert case.ratio("onnxruntime") == pytest.approx(21.0 / 11.0)  # the medians' ratio stays as it was
    assert case.round_ratios("torch") == [] and case.ratio_spread("torch") is None
    assert case.ratio_spread("missing") is None
    line = zoo_run.format_table([case], zoo_run.Settings(models=["net"], onnx={}, batches=[1])).splitlines()[2]
    assert line.split()[-1] == "1.75-2.25"


def test_static_batch_file_runs_once_at_its_own_batch(bench_models, tmp_path):
    path = tiny_model(tmp_path / "fixed.onnx", batch=2)
    code, doc, out, _ = bench_models("--onnx", path, "--batches", "1,8", "--repeat", "2", "--warmup", "1")
    assert code == 0
    assert [(r["model"], r["batch"]) for r in doc["results"]] == [("fixed", 2)]
    assert float(table_line(out, "fixed", 2)[3]) > 0


def test_graphc_failure_is_a_row_and_the_run_goes_on(bench_models, tmp_path):
    bad = tiny_model(tmp_path / "custom.onnx", domain="com.example")  # a Relu of a domain graphc does not know
    good = tiny_model(tmp_path / "tiny.onnx")
    code, doc, out, _ = bench_models("--onnx", bad, good, "--batches", "1", "--repeat", "2", "--warmup", "1")
    assert code == 0
    failed, ok = doc["results"]
    error = failed["systems"]["graphc"]["error"]
    assert error.startswith("UnsupportedOnnx: ") and "'com.example' is not supported" in error
    assert "\n" not in error and failed["systems"]["graphc"]["times_ms"] == []
    assert table_line(out, "custom", 1)[3] == "error"
    assert f"graphc-llvm: {error}" in out and "graphc failed on: custom b1" in out
    assert ok["systems"]["graphc"]["error"] is None and ok["systems"]["graphc"]["median_ms"] > 0


def test_a_symbolic_dimension_besides_the_batch_is_the_row_error(bench_models, tmp_path):
    path = tiny_model(tmp_path / "tall.onnx", height="H")
    code, doc, out, _ = bench_models("--onnx", path, "--batches", "1", "--repeat", "2")
    assert code == 0
    (r,) = doc["results"]
    assert "symbolic dimension 2 besides the batch" in r["error"] and r["systems"] == {}
    assert "symbolic dimension 2 besides the batch" in out


@pytest.mark.parametrize("args, message", [
    (["no_such_net"], "unknown model no_such_net; choose from resnet18, resnet50"),
    (["resnet18", "--batches", "0,8"], "--batches 0,8: batch sizes must be >= 1"),
    (["--batches", "one"], "--batches one: expected a comma list of integers"),
    (["--threads", "0"], "--threads and --repeat must be >= 1"),
    (["--onnx", "missing.onnx"], "--onnx missing.onnx: no such file"),
])
def test_bad_arguments_are_clear_errors(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["bench", "models", *args]) == 2
    err = capsys.readouterr().err
    assert f"error: {message}" in err and "Traceback" not in err


def test_unreadable_onnx_files_are_clear_errors(capsys, tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\xff\xfe not a protobuf \x00\x01" * 10)
    for path, message in ((garbage, "not an ONNX model"), (tmp_path, "no such file")):
        assert cli.main(["bench", "models", "--onnx", str(path)]) == 2
        err = capsys.readouterr().err
        assert f"error: --onnx {path}: {message}" in err and "Traceback" not in err


def test_json_to_an_unwritable_path_fails_before_the_run(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(zoo_run, "run_models", lambda *a, **k: pytest.fail("the run started"))
    path = tiny_model(tmp_path / "tiny.onnx")
    assert cli.main(["bench", "models", "--onnx", path, "--json", str(tmp_path / "no" / "out.json")]) == 2
    assert "error: --json" in capsys.readouterr().err


def test_models_is_its_own_command_beside_the_workloads(capsys):
    assert cli.main(["bench", "models", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: graphc bench models") and "--exporter {torchscript,dynamo}" in out
    assert "efficientnet_b0" in out
    assert cli.main(["bench", "--help"]) == 0
    assert "graphc bench models [MODEL ...]" in capsys.readouterr().out
    assert cli.main(["bench", "gemm", "models"]) == 2  # `models` must come first
    assert "'models' is a command of its own and comes first" in capsys.readouterr().err
    args = cli.build_parser().parse_args(["bench", "gemm", "--threads", "2"])  # the workloads parse as before
    assert args.workloads == ["gemm"] and args.threads == 2 and args.handler.__name__ == "handle"
    args = cli.build_parser().parse_args(["bench", "models", "--batches", "2", "resnet18", "--small"])
    assert args.models == ["resnet18"] and args.batches == "2" and args.small and args.repeat == 7
    assert args.handler.__name__ == "handle_models"


def test_rounds_are_interleaved_and_capped():
    order = []
    rows = {k: Row("models", "c", k) for k in "abc"}

    def call(key):
        def run():
            order.append(key)
            if key == "b" and order.count("b") == 2:
                raise RuntimeError("lost the device\nsecond line")
        return run

    zoo_run.time_interleaved({k: call(k) for k in "abc"}, rows, repeat=4, max_seconds=60)
    assert order == ["a", "b", "c", "a", "b", "c", "a", "c", "a", "c"]
    assert len(rows["a"].times_ms) == len(rows["c"].times_ms) == 4
    assert rows["b"].error == "RuntimeError: lost the device" and rows["b"].times_ms == []
    slow = {"s": Row("models", "c", "s")}
    zoo_run.time_interleaved({"s": lambda: time.sleep(0.002)}, slow, repeat=50, max_seconds=0.001)
    assert len(slow["s"].times_ms) == 3  # past max_seconds: stop once 3 rounds are done
    assert all(t >= 2.0 for t in slow["s"].times_ms)


def test_torchvision_model_small(bench_models, tmp_path):
    """``--small``: resnet18 on 3x64x64 at batch 1, exported once into --cache, on every system available."""
    torch = pytest.importorskip("torch")
    tv, why = zoo.import_torchvision(torch)
    if tv is None:
        pytest.skip(why)
    cache = tmp_path / "cache"
    code, doc, out, _ = bench_models("--small", "--repeat", "3", "--cache", str(cache))
    assert code == 0
    (r,) = doc["results"]
    assert (r["model"], r["batch"], r["input"], r["error"]) == ("resnet18", 1, "3x64x64", None)
    assert r["onnx"].startswith(str(cache)) and r["export_s"] > 0
    expected = {"graphc", "torch"} | ({"onnxruntime"} if zoo.import_onnxruntime()[0] else set())
    assert set(r["systems"]) == expected
    for system in r["systems"].values():
        assert system["error"] is None and system["samples"] == 3 and system["median_ms"] > 0
    assert r["graphc_over_torch"] == pytest.approx(r["systems"]["graphc"]["median_ms"] /
                                                   r["systems"]["torch"]["median_ms"])
    check = r["check"]
    assert check["vs"] == ("onnxruntime" if "onnxruntime" in expected else "torch") and check["ok"]
    assert check["max_abs_diff"] < 1e-4 * check["max_abs_reference"] and check["max_abs_reference"] > 0.1
    cells = table_line(out, "resnet18", 1)
    assert float(cells[3]) > 0 and float(cells[5]) > 0 and "ONNX files: torch.onnx.export(dynamo=False" in out
    # the export is cached: a second run reuses the file
    code, doc, _, _ = bench_models("resnet18", "--small", "--repeat", "1", "--warmup", "1", "--cache", str(cache))
    assert code == 0 and doc["results"][0]["export_s"] is None and doc["results"][0]["onnx"] == r["onnx"]


def test_torchvision_batch_norm_is_randomized():
    torch = pytest.importorskip("torch")
    tv, why = zoo.import_torchvision(torch)
    if tv is None:
        pytest.skip(why)
    model = zoo.torch_model(torch, tv, "resnet18")
    bn = model.bn1
    assert not model.training
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
    assert not torch.allclose(bn.weight, torch.ones_like(bn.weight))
    again = zoo.torch_model(torch, tv, "resnet18")  # the seed fixes the weights
    assert torch.equal(again.fc.weight, model.fc.weight) and torch.equal(again.bn1.bias, bn.bias)


def test_threads_without_threadpoolctl_reexecute_the_same_command(monkeypatch, tmp_path):
    """Where BLAS threads can only be set before NumPy loads, the command reruns itself with the same arguments."""
    import graphc.cli.bench as bench_command

    calls = []
    monkeypatch.setattr(bench_command, "needs_reexec", lambda threads: True)
    monkeypatch.setattr(bench_command, "reexec", lambda argv, threads: calls.append((argv, threads)) or 0)
    path = tiny_model(tmp_path / "tiny.onnx")
    argv = ["models", "resnet18", "--threads", "2", "--onnx", path, "--small", "--cache", str(tmp_path),
            "--exporter", "dynamo", "--max-seconds", "5", "--tune"]
    assert cli.main(["bench", *argv]) == 0
    ((again, threads),) = calls
    assert threads == 2 and again[0] == "models"
    first, second = (vars(cli.build_parser().parse_args(["bench", *a])) for a in (argv, again))
    assert {k: v for k, v in second.items() if k != "batches"} == {k: v for k, v in first.items() if k != "batches"}
    assert second["batches"] == "1"  # --small's default, spelled out


def test_check_difference_keeps_nan_and_refuses_other_shapes():
    ref = [np.array([[1.0, -4.0]], np.float32), np.array([2.0], np.float32)]
    assert zoo_run.max_abs_diff([np.array([[1.5, -4.0]], np.float32), np.array([1.0])], ref) == (1.0, 4.0)
    diff, _ = zoo_run.max_abs_diff([np.array([[np.nan, -4.0]], np.float32), np.array([2.0])], ref)
    assert np.isnan(diff)
    with pytest.raises(ValueError, match="output shapes differ"):
        zoo_run.max_abs_diff([np.zeros((2, 1)), np.zeros(1)], ref)
