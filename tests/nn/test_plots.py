"""Learning curves: History.plot and gc.nn.plot_histories (matplotlib, the ``plot`` extra), and the one-line hint
when matplotlib is missing."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.nn.callbacks import History
from graphc.nn.plots import PlotError

matplotlib = pytest.importorskip("matplotlib")  # in the `test` extra: CI runs these


def _history(epochs=4, val=True, acc=True, scale=1.0):
    h = History()
    for e in range(epochs):
        logs = {"loss": scale / (e + 1)}
        if acc:
            logs["accuracy"] = 0.5 + 0.1 * e
        if val:
            logs["val_loss"] = scale * 1.5 / (e + 1)
            if acc:
                logs["val_accuracy"] = 0.4 + 0.1 * e
        h.on_epoch_end(e, logs)
    return h


def _lines(ax):
    return {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}


def test_history_plot_returns_a_figure_with_a_panel_per_metric_and_both_curves():
    h = _history()
    figure = h.plot()
    assert isinstance(figure, matplotlib.figure.Figure)
    axes = figure.get_axes()
    assert [ax.get_title() for ax in axes] == ["loss", "accuracy"]
    loss = _lines(axes[0])
    assert loss["training"] == pytest.approx(h.history["loss"])
    assert loss["validation"] == pytest.approx(h.history["val_loss"])
    assert list(axes[0].get_lines()[0].get_xdata()) == [1, 2, 3, 4]
    assert _lines(axes[1])["validation"] == pytest.approx(h.history["val_accuracy"])


def test_history_plot_chosen_metrics_and_training_only():
    figure = _history(val=False).plot(metrics="accuracy")
    (ax,) = figure.get_axes()
    assert ax.get_title() == "accuracy" and set(_lines(ax)) == {"training"}
    figure = _history().plot(metrics=["val_loss"])  # a val_ name selects that metric's panel
    assert [ax.get_title() for ax in figure.get_axes()] == ["loss"]


def test_history_plot_writes_png_and_svg(tmp_path):
    h = _history()
    png = h.plot(tmp_path / "sub" / "curves.png")
    assert png == str(tmp_path / "sub" / "curves.png")
    assert (tmp_path / "sub" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = (tmp_path / "c.svg")
    h.plot(str(svg))
    assert "<svg" in svg.read_text()


def test_history_plot_errors_are_one_clear_line(tmp_path):
    with pytest.raises(PlotError, match="no metric 'mae' was logged; available: loss, accuracy"):
        _history().plot(metrics="mae")
    with pytest.raises(PlotError, match="nothing to plot"):
        History().plot()
    with pytest.raises(PlotError, match="unknown extension 'txt'; use one of .*png"):
        _history().plot(tmp_path / "curves.txt")


def test_history_plot_after_a_real_fit(tmp_path):
    x = np.random.default_rng(0).normal(size=(32, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = gc.nn.Sequential([gc.nn.Dense(4, activation="relu", input_shape=(3,)), gc.nn.Dense(2, "softmax")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"], backend="numpy")
    h = model.fit(x, y, epochs=3, batch_size=16, validation_data=(x[:8], y[:8]), verbose=0)
    figure = h.plot()
    assert [ax.get_title() for ax in figure.get_axes()] == ["loss", "accuracy"]
    assert _lines(figure.get_axes()[0])["validation"] == pytest.approx(h.history["val_loss"])


def test_plot_histories_compares_runs_with_validation_dashed(tmp_path):
    h1, h2 = _history(scale=1.0), _history(scale=2.0, val=False)
    figure = gc.nn.plot_histories({"SGD": h1, "Adam": h2}, metric="loss", logy=True)
    (ax,) = figure.get_axes()
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"SGD", "SGD (validation)", "Adam"}
    assert list(lines["Adam"].get_ydata()) == pytest.approx(h2.history["loss"])
    assert lines["SGD (validation)"].get_linestyle() == "--"
    assert lines["SGD"].get_color() == lines["SGD (validation)"].get_color() != lines["Adam"].get_color()
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "loss"
    legend = [text.get_text() for text in ax.get_legend().get_texts()]  # one entry per run, then the line styles
    assert legend == ["SGD", "Adam", "training loss", "validation loss"]
    # Keras-style dicts work too, and validation curves can be left out
    figure = gc.nn.plot_histories({"a": h1.history}, validation=False)
    assert [line.get_label() for line in figure.get_axes()[0].get_lines()] == ["a"]
    path = gc.nn.plot_histories({"SGD": h1, "Adam": h2}, tmp_path / "cmp.png", metric="accuracy")
    assert (tmp_path / "cmp.png").stat().st_size > 1000 and path.endswith("cmp.png")


def test_plot_histories_errors():
    with pytest.raises(PlotError, match="non-empty dict"):
        gc.nn.plot_histories({})
    with pytest.raises(PlotError, match="'B' logged no 'accuracy'"):
        gc.nn.plot_histories({"A": _history(), "B": _history(acc=False)}, metric="accuracy")
    with pytest.raises(PlotError, match="expected a History"):
        gc.nn.plot_histories({"A": [0.1, 0.2]})


def test_without_matplotlib_a_one_line_install_hint(monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    for draw in (lambda: _history().plot(), lambda: gc.nn.plot_histories({"A": _history()})):
        with pytest.raises(gc.GraphcError) as info:
            draw()
        hint, at = str(info.value).split("\n")  # the hint, then the user's line (this test's)
        assert hint == "plotting needs matplotlib, which is not installed: pip install 'graphc[plot]'"
        assert at.startswith("  at ") and "test_plots.py" in at
        assert info.value.__cause__ is None and info.value.__suppress_context__  # no ImportError chained


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _run_example(cwd, *args, without_matplotlib=False):
    path = [str(EXAMPLES.parent)]
    if without_matplotlib:  # a `matplotlib` package that cannot be imported shadows the real one
        (cwd / "shadow" / "matplotlib").mkdir(parents=True)
        (cwd / "shadow" / "matplotlib" / "__init__.py").write_text("raise ImportError('No module named matplotlib')\n")
        path.insert(0, str(cwd / "shadow"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    result = subprocess.run([sys.executable, str(EXAMPLES / "optimizers.py"), "--epochs", "2", "--backend", "numpy",
                             *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.stdout


def test_the_optimizers_example_writes_its_comparison_and_reports_progress(tmp_path):
    out = _run_example(tmp_path, "--plot", "pictures/optimizers.svg")
    assert "loss curves: pictures/optimizers.svg" in out
    assert "<svg" in (tmp_path / "pictures" / "optimizers.svg").read_text()
    progress = [line for line in out.splitlines() if line.startswith("[")]
    assert len(progress) == 6 and progress[0].startswith("[1/6] SGD: epoch 2/2, loss ")
    assert progress[-1].startswith("[6/6] Adam: epoch 2/2, loss ")


def test_the_optimizers_example_without_matplotlib_prints_the_hint_not_a_traceback(tmp_path):
    out = _run_example(tmp_path, without_matplotlib=True)
    assert "(no picture: plotting needs matplotlib, which is not installed: pip install 'graphc[plot]')" in out
    assert not (tmp_path / "out").exists()
    assert out.splitlines()[-2].split()[0] == "2"  # the table is still printed in full
