"""Learning curves with matplotlib (the optional extra ``pip install 'graphc[plot]'``).

    history = model.fit(x, y, validation_split=0.2, epochs=20)
    history.plot("curves.png")                       # one panel per metric: training and validation
    gc.nn.plot_histories({"SGD": h1, "Adam": h2}, "loss.png", metric="loss")

Figures are built with matplotlib's object API on the Agg canvas: nothing needs a display, no pyplot window is
opened and no global figure is left behind. Without ``path`` the :class:`matplotlib.figure.Figure` is returned (a
notebook displays it); with one the picture is written there (format from the extension: png, svg, pdf, ...) and
the path is returned.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from graphc.ir import GraphcError

INSTALL_HINT = "pip install 'graphc[plot]'"


class PlotError(GraphcError):
    """A learning curve could not be drawn (matplotlib missing, nothing to plot, an unknown metric or format)."""


def matplotlib_figure(width: float, height: float) -> Any:
    """A new matplotlib Figure on the Agg canvas; a one-line :class:`PlotError` when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotError(f"plotting needs matplotlib, which is not installed: {INSTALL_HINT}") from None
    if "ipykernel" in sys.modules:  # in a notebook: let pyplot's inline backend register the Figure display hook
        try:
            import matplotlib.pyplot  # noqa: F401
        except Exception:  # a broken GUI backend must not stop a plot being returned
            pass
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _logs(history: Any, what: str) -> dict[str, list[float]]:
    """The per-epoch logs of a History (or of a Keras-style ``{key: [values]}`` dict)."""
    logs = getattr(history, "history", history)
    if not isinstance(logs, Mapping):
        raise PlotError(f"{what}: expected a History (what fit returns) or a dict of per-epoch lists, "
                        f"got {type(history).__name__}")
    return {str(k): [float(v) for v in values] for k, values in logs.items()}


def _epochs(history: Any, count: int) -> list[int]:
    """1-based epoch numbers (a fit started at ``initial_epoch`` continues the count)."""
    epochs = list(getattr(history, "epoch", []) or [])
    return [int(e) + 1 for e in epochs] if len(epochs) == count else list(range(1, count + 1))


def _metric_names(logs: Mapping[str, list[float]], metrics: Any) -> list[str]:
    base = [k for k in logs if not k.startswith("val_") and k not in ("lr", "learning_rate")]
    base += [k[4:] for k in logs if k.startswith("val_") and k[4:] not in base]
    if metrics is None:
        return base
    wanted = [metrics] if isinstance(metrics, str) else list(metrics)
    for m in wanted:
        if not isinstance(m, str) or m.removeprefix("val_") not in base:
            raise PlotError(f"History.plot: no metric {m!r} was logged; available: {', '.join(base) or '(none)'}")
    return list(dict.fromkeys(m.removeprefix("val_") for m in wanted))


def _epoch_axis(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no "epoch 2.5"
    ax.grid(True, alpha=0.3)


def _save(figure: Any, path: str | os.PathLike) -> str:
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lstrip(".").lower()
    formats = figure.canvas.get_supported_filetypes()
    if ext not in formats:
        raise PlotError(f"cannot write a picture to {path!r}: unknown extension {ext!r}; use one of "
                        f"{', '.join(sorted(formats))}")
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def plot_history(history: Any, path: str | os.PathLike | None = None, metrics: str | Sequence[str] | None = None
                 ) -> Any:
    """Learning curves of one training run: one panel per metric (``metrics``: names such as ``"loss"`` or
    ``["loss", "accuracy"]``; default all logged), the training curve and, when logged, the validation curve.

    Returns the Figure when ``path`` is None, else writes the picture to ``path`` and returns the path."""
    logs = _logs(history, "History.plot")
    names = _metric_names(logs, metrics)
    if not names or not any(logs.get(n) or logs.get(f"val_{n}") for n in names):
        raise PlotError("History.plot: nothing to plot: no epoch was logged (has fit run?)")
    figure = matplotlib_figure(4.5 * len(names), 3.5)
    axes = figure.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names):
        for key, label, style in ((name, "training", "-"), (f"val_{name}", "validation", "--")):
            values = logs.get(key)
            if values:
                ax.plot(_epochs(history, len(values)), values, style, marker="." if len(values) < 30 else None,
                        label=label)
        ax.set_title(name)
        _epoch_axis(ax)
        ax.legend()
    return figure if path is None else _save(figure, path)


def plot_histories(histories: Mapping[str, Any], path: str | os.PathLike | None = None, metric: str = "loss",
                   validation: bool = True, logy: bool = False) -> Any:
    """Compare runs: ``metric`` of each named History on one set of axes (``{"SGD": h1, "Adam": h2}``).

    Training curves are solid; with ``validation`` the run's ``val_<metric>`` (when logged) is dashed in the
    same colour. ``logy``: logarithmic y axis. Returns the Figure when ``path`` is None, else the path written."""
    if not isinstance(histories, Mapping) or not histories:
        raise PlotError("plot_histories: expected a non-empty dict {label: History}, e.g. {'SGD': h1, 'Adam': h2}")
    if not isinstance(metric, str) or not metric:
        raise PlotError(f"plot_histories: metric must be a name such as 'loss', got {metric!r}")
    val_key = None if metric.startswith("val_") else f"val_{metric}"  # "val_loss" alone: the validation curves
    runs = [(str(label), h, _logs(h, f"plot_histories[{label!r}]")) for label, h in histories.items()]
    missing = [label for label, _, logs in runs if not logs.get(metric)]
    if missing:
        logged = sorted({k for _, _, logs in runs for k in logs})
        raise PlotError(f"plot_histories: {', '.join(map(repr, missing))} logged no {metric!r}; logged keys: "
                        f"{', '.join(logged) or '(none)'}")
    outside = len(runs) > 4  # many runs: the legend goes to the right of the axes, off the curves
    figure = matplotlib_figure(9.0 if outside else 7.0, 4.5)
    from matplotlib.lines import Line2D  # (after matplotlib_figure: a missing matplotlib is its one-line error)

    ax = figure.subplots()
    handles, dashed = [], False
    for i, (label, history, logs) in enumerate(runs):
        colour = f"C{i % 10}"
        for key, suffix, style in ((metric, "", "-"), (val_key, " (validation)", "--")):
            values = logs.get(key) if key is not None and (validation or key == metric) else None
            if values:
                (line,) = ax.plot(_epochs(history, len(values)), values, style, color=colour, label=label + suffix)
                handles += [line] if key == metric else []
                dashed = dashed or key != metric
    if dashed:  # one legend entry per run, and what solid and dashed mean
        handles += [Line2D([], [], color="black", linestyle="-", label=f"training {metric}"),
                    Line2D([], [], color="black", linestyle="--", label=f"validation {metric}")]
    _epoch_axis(ax)
    ax.set_ylabel(metric)
    if logy:
        ax.set_yscale("log")
    where = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0)} if outside else {}
    ax.legend(handles=handles, fontsize="small", **where)
    return figure if path is None else _save(figure, path)
