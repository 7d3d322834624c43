"""A damaged object cache is a miss: a truncated, garbage, bit-flipped or raw entry, another program's entry, a
FIFO or a symlink all recompile and give the same answer (never an abort, a crash, a hang or a skipped label check),
and the entry is replaced by a good one; a folder under the entry's name is a miss too. Each case runs in a
subprocess, so a crash fails the test instead of killing the run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = """
    import glob, os, sys
    import numpy as np
    import graphc as gc
    from codegen import cache

    def program(labels_classes):
        g = gc.Graph("p")
        z = g.input("z", (4, labels_classes))
        y = g.input("y", (4,), "int64")
        return gc.compile({"loss": gc.softmax_cross_entropy(gc.tanh(z) * 3.0, y)})

    def run(prog):
        z = np.linspace(-1, 1, prog.inputs["z"].size, dtype=np.float32).reshape(prog.inputs["z"].shape)
        return float(prog(z=z, y=np.array([0, 1, 2, 0]))["loss"])

    first = program(3)
    want = run(first)
    (path,) = glob.glob(os.path.join(os.environ["GRAPHC_CACHE_DIR"], "*" + cache.SUFFIX))
    other = program(5).jit.cache_path
    CASE
    again = program(3)
    assert not again.jit.cache_hit, "a damaged entry was used"
    assert run(again) == want
    try:
        again(z=np.zeros((4, 3), np.float32), y=np.array([0, 7, 1, 1]))
        raise SystemExit("label check lost")
    except gc.GraphcError as err:
        assert "outside [0, 3)" in str(err)
    third = program(3)
    assert third.jit.cache_hit and run(third) == want, "the entry was not replaced by a good one"
    print("ok")
"""

CASES = {
    "truncated": "data = open(path, 'rb').read(); open(path, 'wb').write(data[: len(data) // 2])",
    "empty": "open(path, 'wb').close()",
    "garbage": "open(path, 'wb').write(os.urandom(4096))",
    "flipped": ("data = bytearray(open(path, 'rb').read())\n"
                "for i in range(64): data[len(data) - 1 - 37 * i] ^= 0xFF\n"
                "open(path, 'wb').write(bytes(data))"),
    "raw_object": ("data = open(path, 'rb').read()\n"
                   "open(path, 'wb').write(cache.decode(os.path.basename(path)[:64], data).object)"),
    "another_programs_entry": "os.replace(other, path)",
    "fifo": "os.remove(path); os.mkfifo(path)",
    "symlink": "os.remove(path); os.symlink(other, path)",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_damaged_entry_recompiles_and_is_replaced(case, tmp_path):
    script = textwrap.dedent(SCRIPT).replace("CASE", CASES[case])
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(tmp_path), "GRAPHC_CACHE": "1", "PYTHONPATH": os.getcwd()}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "ok", (out.returncode, out.stdout, out.stderr[-3000:])


def test_a_folder_under_the_entry_name_is_a_miss(tmp_path, monkeypatch):
    from codegen import cache

    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    key = "ab" * 32
    os.mkdir(cache.entry_path(key))
    assert cache.load(key) is None
    cache.store(key, b"\x7fELF object", {"n": 1})  # cannot replace a folder: a failure only costs the cache
    assert os.path.isdir(cache.entry_path(key)) and not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_entries_round_trip_and_name_their_key(tmp_path, monkeypatch):
    from codegen import cache

    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    key, other = "0123456789abcdef" * 4, "f" * 64
    cache.store(key, b"object bytes", {"error_nodes": [2, 0]})
    entry = cache.load(key)
    assert entry is not None and entry.object == b"object bytes" and entry.meta == {"error_nodes": [2, 0]}
    os.replace(cache.entry_path(key), cache.entry_path(other))
    assert cache.load(other) is None  # the entry names another key
    monkeypatch.setenv("GRAPHC_CACHE", "0")
    assert cache.load(key) is None
