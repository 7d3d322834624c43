"""The ``graphc`` command line: target loading, render, run, feeds, error reporting and the package layout."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import graphc as gc
import graphc.cli as cli
import graphc.cli.render as render_command
from graphc.cli import targets

ROOT = Path(__file__).resolve().parents[1]
APPLE = str(ROOT / "examples" / "apple.py")


@pytest.fixture
def script(tmp_path):
    """Write a user script into tmp_path and return its path."""

    def write(source: str, name: str = "model.py") -> str:
        path = tmp_path / name
        path.write_text(textwrap.dedent(source))
        return str(path)

    return write


MODEL = """
    import graphc as gc

    g = gc.Graph("model")
    x = g.input("x", (2,))
    y = (x * x).sum()
    dy = gc.grad(y, [x])[0]
    both = {"y": y, "dy": dy}
    FEEDS = {"x": [1.0, 2.0]}

    def make():
        return [y]

    if __name__ == "__main__":
        raise SystemExit("the main block must not run")
"""


def test_load_target_names_and_default(script):
    path = script(MODEL)
    namespace, obj = targets.load_target(path)
    assert isinstance(obj, gc.Graph) and obj is namespace["g"]  # no `outputs`: the single Graph
    assert namespace_of(path, "y").op == "sum"
    _, both = targets.load_target(f"{path}:both")
    assert set(both) == {"y", "dy"}
    _, made = targets.load_target(f"{path}:make")
    assert isinstance(made, list) and made[0].op == "sum"
    _, graph = targets.load_target(f"{path}:y.graph")
    assert isinstance(graph, gc.Graph)


def namespace_of(path: str, name: str):
    namespace, obj = targets.load_target(f"{path}:{name}")
    assert obj is namespace[name]
    return obj


def test_load_target_prefers_outputs(script):
    _, obj = targets.load_target(APPLE)
    assert set(obj) == {"price", "d_apple", "d_num", "d_tax"}


def test_split_spec():
    assert targets.split_spec("a/b.py:loss") == ("a/b.py", "loss")
    assert targets.split_spec("a/b.py") == ("a/b.py", None)
    assert targets.split_spec("a/b.py:m.loss") == ("a/b.py", "m.loss")


@pytest.mark.parametrize("suffix, message", [
    (":nothing", "defines no 'nothing'"),
    (":FEEDS", "expected a Graph"),
])
def test_bad_names_are_errors(script, capsys, suffix, message):
    path = script(MODEL)
    assert cli.main(["run", path + suffix]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_missing_file_and_ambiguous_default(script, capsys):
    assert cli.main(["run", "/no/such/file.py"]) == 2
    assert "no such file" in capsys.readouterr().err
    path = script("import graphc as gc\na = gc.Graph('a')\nb = gc.Graph('b')\n")
    assert cli.main(["render", path, "-o", "x.dot"]) == 2
    err = capsys.readouterr().err
    assert "no target name given" in err and "a, b" in err


def test_run_prints_results(capsys):
    assert cli.main(["run", APPLE]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["price = 220", "d_apple = 2.2", "d_num = 110", "d_tax = 200"]


def test_run_feed_overrides_defaults(capsys):
    assert cli.main(["run", APPLE, "--feed", "num=3", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert "price = 330" in out and "d_apple = 3.3" in out and "d_num = 110" in out


def test_run_arrays_and_list_feeds(script, capsys):
    path = script(MODEL)
    assert cli.main(["run", f"{path}:both", "--feed", "x=[3, 4]"]) == 0
    out = capsys.readouterr().out
    assert "y = 25" in out
    assert "dy = float32[2]" in out and "[6. 8.]" in out


def test_missing_feed_is_a_clear_error(script, capsys):
    path = script(MODEL.replace('FEEDS = {"x": [1.0, 2.0]}', ""))
    assert cli.main(["run", f"{path}:y"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: missing feed 'x'") and "Traceback" not in err


@pytest.mark.parametrize("feed, message", [
    ("x", "expected name=value"),
    ("x=hello", "not a number"),
    ("x=[1, 2, 3]", "expected shape (2,)"),
])
def test_bad_feed_values(script, capsys, feed, message):
    path = script(MODEL)
    assert cli.main(["run", f"{path}:y", "--feed", feed]) == 2
    assert message in capsys.readouterr().err


def test_render_writes_dot_with_values(tmp_path, capsys):
    out = tmp_path / "apple.dot"
    assert cli.main(["render", APPLE, "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    dot = out.read_text()
    assert "cluster_backward" in dot
    for value in ("220", "2.2", "110", "200"):  # quoted or not: graphviz writes valid DOT IDs bare
        assert re.search(rf'label="?{re.escape(value)}"?[ \]]', dot), value


def test_render_no_values_and_default_output(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seen = []
    monkeypatch.setattr(render_command, "render",
                        lambda obj, out, values=None, style="graph": seen.append((out, values, style))
                        or SimpleNamespace(path=out))
    assert cli.main(["render", APPLE, "--no-values"]) == 0
    assert seen == [("apple.svg", None, "graph")]
    capsys.readouterr()


def test_render_a_graph_target(script, tmp_path):
    path = script(MODEL)
    out = tmp_path / "g.dot"
    assert cli.main(["render", f"{path}:g", "-o", str(out)]) == 0
    dot = out.read_text()
    assert 'label="[1, 2]"' in dot and re.search(r'label="?5"?[ \]]', dot)  # x and y from FEEDS


def test_render_textbook_style(script, tmp_path, capsys):
    path = script(MODEL)
    out = tmp_path / "y.dot"
    assert cli.main(["render", f"{path}:y", "--style", "textbook", "-o", str(out)]) == 0
    dot = out.read_text()
    assert "cluster_backward" not in dot  # forward ops only
    # y = Σ x·x at x = [1, 2]: each use of x gets its share [1, 2] of dy/dx = [2, 4]; the sum passes [1, 1]
    for value in ("5", "← 1", "← [1, 2]", "← [1, 1]"):
        assert value in dot, value
    capsys.readouterr()


def test_llvm_backend_request_reports_cleanly(capsys):
    code = cli.main(["run", APPLE, "--backend", "llvm"])
    captured = capsys.readouterr()
    if code == 0:  # once the LLVM backend exists it must agree with the interpreter
        assert "price = 220" in captured.out
    else:
        assert code == 2 and captured.err.startswith("error: ")


def test_help_and_usage(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "render" in out and "run" in out and "examples:" in out
    assert cli.main([]) == 2
    assert "usage: graphc" in capsys.readouterr().out
    assert cli.main(["frobnicate"]) == 2
    assert cli.main(["run", "--help"]) == 0
    assert "--feed" in capsys.readouterr().out


def test_register_command(capsys, monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", list(cli.COMMANDS))

    def add_hello(subparsers):
        parser = subparsers.add_parser("hello", help="say hello")
        parser.set_defaults(handler=lambda args: print("hello") or 0)
        return parser

    cli.register_command(add_hello)
    assert cli.main(["hello"]) == 0
    assert capsys.readouterr().out == "hello\n"


def test_format_result():
    assert targets.format_result("a", np.float32(2.2)) == "a = 2.2"
    assert targets.format_result("n", np.int64(3)) == "n = 3"
    assert targets.format_result("v", np.array([1.0, 2.0])).startswith("v = float64[2]\n  [1. 2.]")


def test_installed_console_script_help():
    exe = Path(sys.executable).parent / "graphc"
    if not exe.exists():
        pytest.fail(f"console script {exe} is not installed (pip install -e .)")
    env = dict(os.environ)
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: graphc")
    assert "render" in proc.stdout and "run" in proc.stdout


def test_python_m_graphc_cli_help():
    proc = subprocess.run([sys.executable, "-m", "graphc.cli", "--help"], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: graphc")
    for command in ("render", "run", "ir", "passes", "bench"):
        assert command in proc.stdout


SUBCOMMAND_MODULES = sorted(m.name for m in pkgutil.iter_modules(cli.__path__) if m.name not in ("targets", "__main__"))


def test_the_subcommand_modules_are_the_commands():
    """Every module of graphc/cli but ``targets`` and ``__main__`` is one subcommand, listed in COMMANDS."""
    assert SUBCOMMAND_MODULES == ["bench", "explain", "ir", "launch", "passes", "render", "run"]
    assert [f.__module__ for f in cli.COMMANDS] == [f"graphc.cli.{name}" for name in
                                                    ("render", "run", "ir", "passes", "explain", "bench", "launch")]
    assert all(f.__name__ == "add_parser" for f in cli.COMMANDS)


@pytest.mark.parametrize("name", SUBCOMMAND_MODULES)
def test_every_subcommand_module_registers_exactly_one_subcommand(name):
    module = importlib.import_module(f"graphc.cli.{name}")
    subparsers = argparse.ArgumentParser(prog="graphc").add_subparsers(dest="command")
    parser = module.add_parser(subparsers)
    assert list(subparsers.choices) == [name]  # one subcommand, named after its module
    assert subparsers.choices[name] is parser
    handler = parser.get_default("handler")
    assert callable(handler) and handler.__module__ == module.__name__


def test_bench_json_to_an_unwritable_path_fails_before_the_run(tmp_path, capsys, monkeypatch):
    import graphc.cli.bench as bench_command

    monkeypatch.setattr(bench_command, "run_benchmarks", lambda *a, **k: pytest.fail("the run started"))
    for bad in (tmp_path, tmp_path / "missing" / "out.json"):
        assert cli.main(["bench", "--small", "--json", str(bad)]) == 2
        assert "error: --json" in capsys.readouterr().err


def test_passes_output_onto_an_existing_file_is_a_clear_error(tmp_path, capsys):
    existing = tmp_path / "taken"
    existing.write_text("not a folder")
    assert cli.main(["passes", APPLE, "-o", str(existing)]) == 2
    err = capsys.readouterr().err
    assert "error: cannot dump into" in err and "not a folder" in err and "Traceback" not in err


def test_output_into_a_closed_pipe_stops_quietly(tmp_path):
    """``graphc ir model.py | head -1``: the reader leaves early; no BrokenPipeError traceback."""
    model = tmp_path / "big.py"  # IR far larger than a pipe's buffer, so the writer meets the closed pipe
    model.write_text("import graphc as gc\ng = gc.Graph('big')\ny = x = g.input('x', (64,))\n"
                     "for i in range(400):\n    y = gc.tanh(y * (1.0 + i / 1000))\noutputs = {'y': y}\n")
    command = f"{sys.executable} -m graphc.cli ir {model} --optimized | head -1"
    out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() and "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr, out.stderr
