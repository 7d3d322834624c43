"""fit's progress display (graphc.nn.progress): one line per epoch in logs, a live bar with ETA and steps/s on a
terminal, the validation phase, the compile time reported as such, tqdm in notebooks."""

import io
import re
import sys
import time
import types

import numpy as np
import pytest

from graphc import nn
from graphc.nn import progress

RNG = np.random.default_rng(5)
X = RNG.standard_normal((40, 3)).astype(np.float32)
Y = (X.sum(axis=1, keepdims=True) > 0).astype(np.float32)


class FakeStream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


def _model():
    model = nn.Sequential([nn.Dense(4, activation="tanh", input_shape=(3,)), nn.Dense(1, activation="sigmoid")])
    model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"], backend="numpy")
    return model


# the compile-time report fit prints first when building its programs took 0.05 s or more (a loaded machine can
# take that long even on the numpy backend); the tests below that are about the epochs leave it out
_COMPILE_REPORT = re.compile(r"compiling…(?: [0-9.]+ s\n|\rcompiling… [0-9.]+ s\n|\r {10}\r)")


def _fit(monkeypatch, tty, **kwargs):
    stream = FakeStream(tty)
    monkeypatch.setattr(sys, "stdout", stream)
    _model().fit(X, Y, epochs=3, batch_size=8, validation_split=0.25, **kwargs)
    return _COMPILE_REPORT.sub("", stream.getvalue(), count=1)


def test_a_log_gets_exactly_one_line_per_epoch(monkeypatch):
    out = _fit(monkeypatch, tty=False, verbose=1)
    lines = out.splitlines()
    assert "\r" not in out and len(lines) == 3
    for epoch, line in enumerate(lines, 1):
        assert line.startswith(f"Epoch {epoch}/3 - 4/4 [==============================] - ")
        assert "steps/s - loss: " in line and " - val_accuracy: " in line


def test_verbose_2_is_one_line_per_epoch_even_on_a_terminal(monkeypatch):
    out = _fit(monkeypatch, tty=True, verbose=2)
    assert "\r" not in out and len(out.splitlines()) == 3 and "ETA" not in out


def test_a_terminal_shows_eta_speed_and_the_validation_phase(monkeypatch):
    out = _fit(monkeypatch, tty=True, verbose=1)
    assert out.count("Epoch ") == 3 and out.count("\n") == 6  # per epoch: its header and its final line
    draws = out.split("\r")
    live = [d for d in draws if "ETA: " in d]
    assert len(live) == 3 * 4 and all("steps/s" in d and "loss: " in d for d in live)
    assert sum("validating…" in d for d in draws) == 3
    final = [d for d in draws if "val_loss" in d]
    assert len(final) == 3 and all(d.endswith("\n") for d in final)
    assert "\r1/4 [======>" + "." * 23 + "] - ETA: " in out


def test_the_compile_time_is_reported_once_before_the_first_epoch(monkeypatch):
    model = _model()
    prepare = model._prepare_training

    def slow_compile(*args, **kwargs):  # stands in for a native compile of a second
        time.sleep(0.3)
        return prepare(*args, **kwargs)

    monkeypatch.setattr(model, "_prepare_training", slow_compile)
    stream = FakeStream(False)
    monkeypatch.setattr(sys, "stdout", stream)
    model.fit(X, Y, epochs=2, batch_size=8, verbose=1)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("compiling… ") and lines[0].endswith(" s") and float(lines[0].split()[1]) >= 0.3
    assert lines[1].startswith("Epoch 1/2") and len(lines) == 3
    monkeypatch.setattr(model, "_prepare_training", prepare)
    stream.truncate(0)
    model.fit(X, Y, epochs=1, batch_size=8, verbose=1)  # programs already compiled: nothing to report
    assert "compiling" not in stream.getvalue()


def test_compiling_is_shown_live_on_a_terminal():
    stream = FakeStream(True)
    with progress.compiling(1, stream):
        assert stream.getvalue() == "compiling…"
        time.sleep(0.1)
    assert stream.getvalue().startswith("compiling…\rcompiling… 0.1 s\n")
    quiet = FakeStream(True)
    with progress.compiling(0, quiet):
        time.sleep(0.06)
    assert quiet.getvalue() == ""


def test_formats():
    assert progress.duration(3.46) == "3.5s" and progress.duration(42) == "42s"
    assert progress.duration(125) == "2:05" and progress.duration(3725) == "1:02:05"
    assert progress.speed(10, 2.0) == "5.0 steps/s" and progress.speed(2, 5.0) == "2.50 s/step"


def test_a_notebook_uses_tqdm_auto_when_installed(monkeypatch):
    bars = []

    class FakeTqdm:
        def __init__(self, total, desc, unit, leave):
            self.total, self.desc, self.unit, self.n, self.postfix, self.closed = total, desc, unit, 0, [], False
            bars.append(self)

        def update(self, n):
            self.n += n

        def set_postfix_str(self, text, refresh=True):
            self.postfix.append(text)

        def close(self):
            self.closed = True

    module = types.ModuleType("tqdm.auto")
    module.tqdm = FakeTqdm
    monkeypatch.setitem(sys.modules, "tqdm", types.ModuleType("tqdm"))
    monkeypatch.setitem(sys.modules, "tqdm.auto", module)
    monkeypatch.setattr(progress, "_in_notebook", lambda: True)
    out = _fit(monkeypatch, tty=False, verbose=1)  # a notebook's stdout is no TTY
    assert [b.desc for b in bars] == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    assert all(b.total == 4 and b.n == 4 and b.unit == "step" and b.closed for b in bars)
    assert all(any(p.endswith("validating…") for p in b.postfix) and "val_loss" in b.postfix[-1] for b in bars)
    assert "Epoch" not in out


def test_without_tqdm_a_notebook_redraws_in_place(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # import fails
    monkeypatch.setattr(progress, "_in_notebook", lambda: True)
    out = _fit(monkeypatch, tty=False, verbose=1)
    assert "ETA: " in out and "\r" in out


def test_the_old_import_still_works():
    from graphc.nn.callbacks import ProgressBar

    assert ProgressBar is progress.ProgressBar
    bar = ProgressBar(0, 1, 2, 1, stream=FakeStream(False))
    bar.update(1, {"loss": 0.5})
    bar.update(2, {"loss": 0.25}, final=True)
    assert bar.stream.getvalue().startswith("Epoch 1/1 - 2/2 [") and bar.stream.getvalue().count("\n") == 1


def test_a_closed_stream_is_not_a_terminal():
    stream = io.StringIO()
    stream.close()
    with pytest.raises(ValueError):
        stream.isatty()
    assert not progress._interactive(stream)


def test_run_progress_prints_a_line_when_a_quiet_model_finishes(monkeypatch):
    stream = FakeStream(False)
    monkeypatch.setattr(sys, "stdout", stream)
    _model().fit(X, Y, epochs=3, batch_size=8, verbose=0, callbacks=[nn.RunProgress(2, 5, "Adam", 3, every=1e9)])
    (line,) = stream.getvalue().splitlines()  # every=1e9: only the last epoch's line
    assert re.fullmatch(r"\[2/5\] Adam: epoch 3/3, loss [0-9.e+-]+, accuracy [0-9.e+-]+ \([0-9.]+ s\)", line), line
