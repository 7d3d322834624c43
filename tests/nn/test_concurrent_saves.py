"""Saving is atomic across processes: concurrent writers of one path never share a temporary file, readers only
ever see complete models, a writer killed mid-save leaves the previous file intact and its stale temporary file
is removed by the next save (a live writer's is not)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from graphc import nn

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

MODEL = """
import numpy as np
from graphc import nn

def model(value):
    m = nn.Sequential([nn.Dense(192, input_shape=(192,)), nn.Dense(192)]).build()
    m.set_weights({k: np.full_like(v, value) for k, v in m.get_weights().items()})
    return m

def value_of(path):
    weights = nn.load_model(path).get_weights()
    values = {float(v) for w in weights.values() for v in np.unique(w)}
    assert len(values) == 1, f"a mixed model: {sorted(values)[:5]}"
    return values.pop()
"""

WRITER = MODEL + """
import sys
path, value, count = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
m = model(value)
for _ in range(count):
    m.save(path)
"""

READER = MODEL + """
import os, sys
path, stop, allowed = sys.argv[1], sys.argv[2], {float(v) for v in sys.argv[3].split(",")}
reads = 0
while not os.path.exists(stop) or reads < 3:
    assert value_of(path) in allowed
    reads += 1
print(reads)
"""

PAUSED_WRITER = MODEL + """
import io, os, sys
real_savez = np.savez

def paused_savez(file, *args, **kwargs):  # writes half the archive, waits for a line on stdin, writes the rest
    buffer = io.BytesIO()
    real_savez(buffer, *args, **kwargs)
    data = buffer.getvalue()
    handle = open(file, "wb") if isinstance(file, (str, os.PathLike)) else file
    handle.write(data[: len(data) // 2])
    handle.flush()
    print("paused", flush=True)
    sys.stdin.readline()
    handle.write(data[len(data) // 2:])
    handle.flush()
    if handle is not file:
        handle.close()

np.savez = paused_savez
model(float(sys.argv[2])).save(sys.argv[1])
print("saved", flush=True)
"""


def _python(script, *args, **kwargs):
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], env=ENV, text=True, **kwargs)


def _model(value):
    namespace = {}
    exec(MODEL, namespace)
    return namespace["model"](value), namespace["value_of"]


def test_concurrent_writers_and_a_reader_only_ever_see_complete_models(tmp_path):
    path, stop = tmp_path / "models" / "m.npz", tmp_path / "stop"
    model, value_of = _model(0.0)
    model.save(str(path))
    writers_values = [1.0, 2.0, 3.0, 4.0]
    reader = _python(READER, path, stop, ",".join(map(str, [0.0, *writers_values])), stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE)
    writers = [_python(WRITER, path, v, 25, stderr=subprocess.PIPE) for v in writers_values]
    errors = [w.communicate(timeout=300)[1] for w in writers]
    stop.touch()
    reads, reader_error = reader.communicate(timeout=300)
    print(f"{reads.strip()} complete reads during the concurrent saves")
    assert [w.returncode for w in writers] == [0] * 4, errors
    assert reader.returncode == 0, reader_error
    assert int(reads) >= 3
    assert value_of(str(path)) in writers_values
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.npz"]


def test_a_writer_killed_mid_save_leaves_the_previous_file_and_its_temporary_is_cleaned_up(tmp_path):
    path = tmp_path / "m.npz"
    model, value_of = _model(0.0)
    model.save(str(path))
    live = _python(PAUSED_WRITER, path, 1.0, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    killed = _python(PAUSED_WRITER, path, 2.0, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert live.stdout.readline().strip() == "paused"
        assert killed.stdout.readline().strip() == "paused"
        killed.kill()  # kill -9 in the middle of writing
        killed.wait(timeout=60)
        assert value_of(str(path)) == 0.0  # the previous model, intact
        assert len([p for p in tmp_path.iterdir() if p.name != "m.npz"]) == 2  # both writers' own temporaries

        _model(3.0)[0].save(str(path))  # removes the dead writer's temporary, leaves the live one's
        leftovers = [p.name for p in tmp_path.iterdir() if p.name != "m.npz"]
        assert len(leftovers) == 1 and f".{live.pid}@" in leftovers[0]
        assert value_of(str(path)) == 3.0

        out, _ = live.communicate("\n", timeout=120)
        assert live.returncode == 0 and "saved" in out
        assert value_of(str(path)) == 1.0
        assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]
    finally:
        for process in (live, killed):
            if process.poll() is None:
                process.kill()
                process.wait()


def test_a_failed_save_removes_its_temporary_and_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    model, value_of = _model(0.0)
    model.save(str(path))
    real_savez = np.savez

    def disk_full(file, *args, **kwargs):
        real_savez(file, *args, **kwargs)  # a partial temporary file exists when the write fails
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(nn.ModelFileError, match=r"cannot save the model to .*m\.npz: .*No space left"):
        _model(5.0)[0].save(str(path))
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]
    assert value_of(str(path)) == 0.0


def test_stale_temporaries_of_dead_or_long_silent_writers_are_removed(tmp_path):
    import graphc.nn.fileformat as fileformat

    path = tmp_path / "m.npz"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = fileformat._host()
    stale_dead = tmp_path / f".m.npz.graphc-tmp.{dead.pid}@{host}.abc123.npz"
    stale_old = tmp_path / f".m.npz.graphc-tmp.{os.getpid()}@otherhost.def456.npz"
    fresh_live = tmp_path / f".m.npz.graphc-tmp.{os.getpid()}@{host}.ghi789.npz"
    fresh_remote = tmp_path / f".m.npz.graphc-tmp.{dead.pid}@otherhost.jkl012.npz"  # can't tell: wait for the age
    other_target = tmp_path / f".n.npz.graphc-tmp.{dead.pid}@{host}.mno345.npz"
    unrelated = tmp_path / ".m.npz.graphc-tmp.notours"
    for p in (stale_dead, stale_old, fresh_live, fresh_remote, other_target, unrelated):
        p.write_bytes(b"partial")
    hour_ago = time.time() - 3600
    os.utime(stale_old, (hour_ago, hour_ago))
    _model(1.0)[0].save(str(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["m.npz", fresh_live.name, fresh_remote.name, other_target.name, unrelated.name])


def test_saved_files_get_the_usual_permissions_not_mkstemps_private_ones(tmp_path):
    path = tmp_path / "m.npz"
    _model(1.0)[0].save(str(path))
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
