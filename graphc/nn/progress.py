"""``fit``'s progress display: steps/s, ETA, the validation phase and the compile time of the first epoch.

Where the output goes decides its form (``verbose=1``):
- a terminal (``stream.isatty()``): one line per epoch redrawn in place —
  ``12/50 [=====>........] - ETA: 3s - 14.2 steps/s - loss: 0.4121``, then ``- validating…`` while the
  validation set runs, then the epoch's final line with its time, speed and the val_* values;
- Jupyter: tqdm's notebook bar (``tqdm.auto``) when tqdm is installed, else the terminal form (notebooks honour
  the carriage return);
- anything else (a log file, a pipe, CI): exactly one line per epoch, written when the epoch ends —
  ``Epoch 3/10 - 50/50 [======] - 3.5s - 14.3 steps/s - loss: 0.41 - val_loss: 0.45``.
``verbose=2`` gives that one line per epoch everywhere, ``verbose=0`` nothing. Before the first epoch, the time
spent compiling the training programs is reported as such (``compiling… 1.3 s``), so the first epoch's speed is
the speed of training.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

WIDTH = 30


def _stream(stream: Any) -> Any:
    return stream if stream is not None else sys.stdout


def _in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (its stdout is not a TTY, yet it redraws lines)."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return type(shell).__name__ == "ZMQInteractiveShell"


def _interactive(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        tty = bool(isatty()) if callable(isatty) else False
    except (ValueError, OSError):  # a closed or detached stream
        tty = False
    return tty or (stream is sys.stdout and _in_notebook())


def _tqdm() -> Any:
    """``tqdm.auto.tqdm`` in a notebook when tqdm is installed, else None."""
    if not _in_notebook():
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


def duration(seconds: float) -> str:
    """``3.5s`` under a minute, then ``m:ss`` and ``h:mm:ss`` (Keras' ETA format)."""
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def speed(steps: int, seconds: float) -> str:
    """``14.3 steps/s``, or ``2.50 s/step`` when a step takes longer than a second."""
    if steps <= 0 or seconds <= 0:
        return "- steps/s"
    rate = steps / seconds
    return f"{rate:.1f} steps/s" if rate >= 1 else f"{seconds / steps:.2f} s/step"


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (float, np.floating)) else str(value)


def _stats(logs: dict[str, Any]) -> str:
    return " - ".join(f"{k}: {_fmt(v)}" for k, v in logs.items())


@contextlib.contextmanager
def compiling(verbose: int, stream: Any = None) -> Iterator[None]:
    """Report the time the enclosed block (building and compiling the training programs) takes:
    ``compiling…`` while it runs on a terminal, ``compiling… 1.3 s`` when done; nothing when it took under
    0.05 s (programs already compiled) or ``verbose=0``."""
    stream = _stream(stream)
    live = verbose == 1 and _interactive(stream) and _tqdm() is None
    start = time.perf_counter()
    if live:
        print("compiling…", end="", file=stream, flush=True)
    try:
        yield
    finally:
        seconds = time.perf_counter() - start
        if live:
            print("\r" + (f"compiling… {seconds:.1f} s" if seconds >= 0.05 else " " * 10 + "\r"),
                  end="\n" if seconds >= 0.05 else "", file=stream, flush=True)
        elif verbose and seconds >= 0.05:
            print(f"compiling… {seconds:.1f} s", file=stream, flush=True)


class ProgressBar:
    """The display of one epoch: ``update(step, logs)`` after each step, ``validating()`` before the validation set,
    ``update(steps, logs, final=True)`` at the end (form: module docstring)."""

    def __init__(self, epoch: int, epochs: int, steps: int, verbose: int, stream: Any = None) -> None:
        self.epoch, self.epochs, self.steps, self.verbose = epoch, epochs, steps, verbose
        self.stream = _stream(stream)
        self.start = time.perf_counter()
        self.train_seconds: float | None = None  # the steps' time, frozen when validation starts
        self.done = 0
        self._logs: dict[str, float] = {}
        self._drawn = 0  # length of the line drawn last (a shorter one is padded to cover it)
        self.live = verbose == 1 and _interactive(self.stream)
        self.tqdm = None
        if self.live:
            tqdm = _tqdm()
            if tqdm is not None:
                self.tqdm = tqdm(total=steps, desc=f"Epoch {epoch + 1}/{epochs}", unit="step", leave=True)
            else:
                print(f"Epoch {epoch + 1}/{epochs}", file=self.stream)

    def _bar(self, step: int) -> str:
        done = int(WIDTH * step / max(self.steps, 1))
        return "=" * max(done - 1, 0) + (">" if done < WIDTH else "=") + "." * (WIDTH - done)

    def update(self, step: int, logs: dict[str, float], final: bool = False) -> None:
        """Show ``step`` of ``steps`` done with the running ``logs``; ``final``: the epoch's closing line."""
        if not self.verbose:
            return
        now = time.perf_counter() - self.start
        if final:
            self._final(step, logs, now)
            return
        self.done = step
        if not self.live:
            return
        if self.tqdm is not None:
            self.tqdm.update(step - self.tqdm.n)
            self.tqdm.set_postfix_str(_stats(logs), refresh=True)
            return
        eta = (self.steps - step) * now / step if step else 0.0
        line = (f"{step}/{self.steps} [{self._bar(step)}] - ETA: {duration(eta)} - {speed(step, now)}"
                f"{' - ' + _stats(logs) if logs else ''}")
        self._draw(line)
        self._logs = logs

    def _draw(self, line: str, end: str = "") -> None:
        print("\r" + line.ljust(self._drawn), end=end, file=self.stream, flush=True)
        self._drawn = 0 if end else len(line)

    def validating(self) -> None:
        """The steps are done and the validation set runs now (shown on a terminal or in a notebook)."""
        self.train_seconds = time.perf_counter() - self.start
        if not (self.verbose and self.live):
            return
        logs = self._logs
        if self.tqdm is not None:
            self.tqdm.set_postfix_str(f"{_stats(logs)} - validating…", refresh=True)
            return
        line = (f"{self.done}/{self.steps} [{self._bar(self.done)}] - {duration(self.train_seconds)} - "
                f"{speed(self.done, self.train_seconds)}{' - ' + _stats(logs) if logs else ''} - validating…")
        self._draw(line)

    def _final(self, step: int, logs: dict[str, float], elapsed: float) -> None:
        train = self.train_seconds if self.train_seconds is not None else elapsed
        if self.tqdm is not None:
            self.tqdm.update(step - self.tqdm.n)
            self.tqdm.set_postfix_str(_stats(logs), refresh=True)
            self.tqdm.close()
            return
        line = f"{step}/{self.steps} [{self._bar(step)}] - {duration(elapsed)} - {speed(step, train)} - {_stats(logs)}"
        if self.live:
            self._draw(line, end="\n")
        else:
            print(f"Epoch {self.epoch + 1}/{self.epochs} - {line}", file=self.stream, flush=True)
