"""The on-disk object-code cache: one verified file per compiled program.

Entries live in ``$GRAPHC_CACHE_DIR`` (default ``~/.cache/graphc``); ``GRAPHC_CACHE=0`` turns the cache off. A key
is a sha256 computed *before* any IR exists (``codegen.module.plan_key`` over a canonical Plan and
:func:`fingerprint`) or, for a bare IR module, over the IR text (:func:`cache_key`). An entry file ``<key>.gco``
holds::

    b"GRAPHCO\\x01" | key (64 ASCII hex digits) | len(meta), len(object) (two little-endian u64)
                  | sha256(meta + object) (32 bytes) | meta (UTF-8 JSON object) | object (the object code)

Nothing is trusted before it is checked: an entry is used only when it is a regular file (opened without
following a symlink and without blocking, so a FIFO or device in the cache folder never hangs a compile), no
larger than ``MAX_ENTRY_BYTES``, has exactly the declared length, names this very key and matches its checksum.
Anything else — truncated, damaged, garbage, another key's entry copied over this one, a special file — is a miss:
the program is compiled again and the entry replaced atomically (a unique temporary file in the folder, fsync,
``os.replace``), so concurrent writers never expose a partial file and a failure to write only costs the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import struct
import tempfile
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

MAGIC = b"GRAPHCO\x01"
_LENGTHS = struct.Struct("<QQ")
HEADER_BYTES = len(MAGIC) + 64 + _LENGTHS.size + 32
MAX_ENTRY_BYTES = 1 << 30
SUFFIX = ".gco"


@dataclass(frozen=True)
class Entry:
    """A verified cache entry: the key it was stored under, the object code and its metadata."""

    key: str
    object: bytes
    meta: dict[str, Any] = field(default_factory=dict)


def cache_dir() -> str:
    """Directory of the object-code cache (``$GRAPHC_CACHE_DIR`` or ``~/.cache/graphc``)."""
    return os.environ.get("GRAPHC_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "graphc")


def cache_enabled() -> bool:
    return os.environ.get("GRAPHC_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")


def entry_path(key: str) -> str:
    return os.path.join(cache_dir(), key + SUFFIX)


@cache
def _version() -> str:
    try:
        return metadata.version("graphc")
    except metadata.PackageNotFoundError:
        return "dev"


@cache
def fingerprint(cpu: str, features: str, llvm_version: tuple[int, ...]) -> str:
    """What, besides a Plan, decides the generated code: CPU name and features, graphc and LLVM versions and the
    source of the compiler itself (``codegen``, ``ops``, ``passes``, ``graphc/ir.py``; hashed once per process), so
    a key built on it never names stale object code, even in a development checkout."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256(f"{cpu}\0{features}\0{_version()}\0{llvm_version}".encode())
    files = sorted(p for d in ("codegen", "ops", "passes") for p in (root / d).rglob("*.py"))
    for path in files + [root / "graphc" / "ir.py"]:
        try:
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
        except OSError:
            digest.update(path.name.encode() + b"\0?")
    return digest.hexdigest()


def cache_key(llvm_ir: str, cpu: str, features: str) -> str:
    """sha256 over the IR text, the CPU name, its features and the graphc version."""
    digest = hashlib.sha256()
    for part in (llvm_ir, cpu, features, _version()):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def encode(key: str, obj: bytes, meta: dict[str, Any]) -> bytes:
    meta_bytes = json.dumps(meta, sort_keys=True).encode()
    checksum = hashlib.sha256(meta_bytes + obj).digest()
    return MAGIC + key.encode("ascii") + _LENGTHS.pack(len(meta_bytes), len(obj)) + checksum + meta_bytes + obj


def decode(key: str, data: bytes) -> Entry | None:
    """The entry in ``data`` if it is complete, intact and stored under ``key``; else None."""
    if len(data) < HEADER_BYTES or not data.startswith(MAGIC) or len(key) != 64:
        return None
    at = len(MAGIC)
    if data[at:at + 64] != key.encode("ascii"):
        return None
    at += 64
    meta_len, obj_len = _LENGTHS.unpack_from(data, at)
    at += _LENGTHS.size
    checksum, body = data[at:at + 32], data[at + 32:]
    if len(body) != meta_len + obj_len or obj_len == 0 or hashlib.sha256(body).digest() != checksum:
        return None
    try:
        meta = json.loads(body[:meta_len].decode())
    except (UnicodeDecodeError, ValueError):
        return None
    return Entry(key, bytes(body[meta_len:]), meta) if isinstance(meta, dict) else None


def load(key: str) -> Entry | None:
    """The verified entry for ``key`` (None when the cache is off, the entry is missing or fails any check)."""
    if not cache_enabled():
        return None
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(entry_path(key), flags)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or not HEADER_BYTES <= info.st_size <= MAX_ENTRY_BYTES:
            return None
        chunks, remaining = [], info.st_size
        while remaining > 0:
            chunk = os.read(fd, remaining)
            if not chunk:
                return None  # shorter than it said it was
            chunks.append(chunk)
            remaining -= len(chunk)
        if os.read(fd, 1):
            return None  # it grew while we read it
    except OSError:
        return None
    finally:
        os.close(fd)
    return decode(key, b"".join(chunks))


def discard(key: str) -> None:
    """Remove the entry for ``key`` if there is one."""
    with contextlib.suppress(OSError):
        os.remove(entry_path(key))


def store(key: str, obj: bytes, meta: dict[str, Any] | None = None) -> None:
    """Write the entry for ``key`` atomically (nothing when the cache is off; a failure only costs the cache)."""
    if cache_enabled():
        atomic_write(entry_path(key), encode(key, obj, meta or {}))


def atomic_write(path: str, data: bytes) -> None:
    """Replace ``path`` by ``data`` all at once: a unique temporary file in the same folder, fsync, rename."""
    tmp = None
    try:
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".graphc-", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError:
        pass
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.remove(tmp)
