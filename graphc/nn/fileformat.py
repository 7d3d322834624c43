"""The container of graphc model files: an uncompressed ``.npz`` (a zip of ``.npy`` members), written atomically
and read defensively. What the members mean is :mod:`graphc.nn.saving`'s business.

Writing (:func:`write_archive`): the archive goes to a unique temporary file in the target's directory
(``.<name>.graphc-tmp.<pid>@<host>.<random>.npz``, made by ``tempfile.mkstemp``), is flushed and fsync'ed, then
``os.replace``'d over the target and the directory is fsync'ed. Concurrent writers never share a temporary file,
readers see the old file or the new one, never a partial one, and a failed write removes its temporary file.

Stale temporary files: a writer killed mid-write (``kill -9``, power loss) leaves its temporary file behind. Every
save first removes the temporary files of *that target* that are stale: written by a process of this host whose
PID no longer exists, or not modified for :data:`STALE_SECONDS` (a writer on another host of a shared file
system, or a PID reused since). A live writer's file is never removed (a writer keeps modifying its file while it
writes). An unreaped (zombie) writer still counts as alive until its parent reaps it.

Reading (:class:`Archive`): every member's ``.npy`` header (shape, dtype) is read before any data, so a caller
can check the whole file against what it expects first; data is read with ``allow_pickle=False``. Members must be
stored uncompressed (what ``np.savez`` writes), so no member can expand past the file's size. Every defect of the
container (not a zip, truncated, bad CRC, duplicate or non-``.npy`` members, malformed headers) is a
:class:`ModelFileError` naming the file and the member.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.lib.format as npy

from graphc.ir import GraphcError

STALE_SECONDS = 30 * 60
_TEMP_MARK = ".graphc-tmp."
# what can go wrong while parsing a hostile container, turned into ModelFileError
_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, KeyError, TypeError,
                UnicodeDecodeError, NotImplementedError, RuntimeError, OverflowError, MemoryError)


class ModelFileError(GraphcError):
    """A model file that cannot be written, or read as a graphc model (the message names the file and entry)."""


KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")


def check_suffix(path: str, action: str) -> None:
    """Refuse a Keras file name (``.h5``, ``.hdf5``, ``.keras``): graphc's files are ``.npz`` archives, and one
    written under a Keras name would mislead every tool (and person) that opens it."""
    stem, suffix = os.path.splitext(os.fspath(path))
    if suffix.lower() in KERAS_SUFFIXES:
        raise ModelFileError(f"cannot {action} {path!r}: {suffix} is a Keras format; graphc's model and weight "
                             f"files are .npz archives (numpy.load reads them). Use {stem + '.npz'!r}")


# ------------------------------------------------------------------------------------------ writing


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:64]


def _temp_prefix(path: str) -> str:
    return f".{os.path.basename(path)}{_TEMP_MARK}"


def _umask() -> int:
    """The process umask (read from /proc where possible: setting it to read it races with other threads)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError):
        return True  # exists under another user, or we cannot tell: keep it
    return True


def _is_stale(entry: os.DirEntry, pattern: re.Pattern, now: float) -> bool:
    match = pattern.fullmatch(entry.name)
    if match is None:
        return False
    try:
        age = now - entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return False
    if age > STALE_SECONDS:
        return True
    return match["host"] == _host() and not _pid_alive(int(match["pid"]))


def remove_stale_temporaries(path: str) -> list[str]:
    """Remove the stale temporary files left for ``path`` by killed writers (rule in the module docstring);
    returns the paths removed."""
    folder = os.path.dirname(os.path.abspath(path))
    pattern = re.compile(re.escape(_temp_prefix(path)) + r"(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]*)\.[A-Za-z0-9_]+\.npz")
    removed, now = [], time.time()
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if _is_stale(entry, pattern, now):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(entry.path)
    return removed


def _fsync_directory(folder: str) -> None:
    with contextlib.suppress(OSError):  # not every platform or file system can open or sync a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_archive(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as an uncompressed ``.npz`` at ``path`` atomically and durably (module docstring)."""
    check_suffix(path, "save to")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        remove_stale_temporaries(path)
        fd, temporary = tempfile.mkstemp(prefix=f"{_temp_prefix(path)}{os.getpid()}@{_host()}.", suffix=".npz",
                                         dir=folder)
    except OSError as err:
        raise ModelFileError(f"cannot save the model to {path}: {err}") from err
    replaced = False
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o666 & ~_umask())  # as open() would create it, not mkstemp's 0600
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        replaced = True
        _fsync_directory(folder)
    except OSError as err:
        raise ModelFileError(f"cannot save the model to {path}: {err}") from err
    finally:
        if not replaced:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


# ------------------------------------------------------------------------------------------ reading


@dataclass(frozen=True)
class Member:
    """One ``.npy`` member of an archive: its key (name without ``.npy``), shape and dtype from its header."""

    key: str
    shape: tuple[int, ...]
    dtype: np.dtype
    info: zipfile.ZipInfo


def _read_header(stream: Any) -> tuple[tuple[int, ...], np.dtype]:
    version = npy.read_magic(stream)
    if version == (1, 0):
        shape, _, dtype = npy.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, _, dtype = npy.read_array_header_2_0(stream)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    return tuple(int(d) for d in shape), np.dtype(dtype)


class Archive:
    """An open model archive: ``members`` (headers only) at once, ``read(key)`` for the data."""

    def __init__(self, path: str) -> None:
        self.path = path
        check_suffix(path, "load")
        try:
            self._zip = zipfile.ZipFile(path)
        except FileNotFoundError:
            raise ModelFileError(f"{path}: no such model file") from None
        except _READ_ERRORS as err:
            raise ModelFileError(f"{path} is not a graphc model file (not a readable .npz archive: {err})") from None
        try:
            self.members = self._index()
        except BaseException:
            self._zip.close()
            raise

    def _index(self) -> dict[str, Member]:
        members: dict[str, Member] = {}
        size = os.path.getsize(self.path)
        for info in self._zip.infolist():
            where = f"{self.path}: entry {info.filename!r}"
            if not info.filename.endswith(".npy") or info.is_dir():
                raise ModelFileError(f"{where} is not a .npy array; graphc model files hold only arrays")
            key = info.filename[:-len(".npy")]
            if key in members:
                raise ModelFileError(f"{where} appears twice")
            if info.compress_type != zipfile.ZIP_STORED:
                raise ModelFileError(f"{where} is compressed; graphc model files store their arrays uncompressed")
            if info.file_size != info.compress_size or info.file_size > size:
                raise ModelFileError(f"{where} claims {info.file_size} bytes; the file holds {size}")
            with self._guard(where, "header"), self._zip.open(info) as stream:
                shape, dtype = _read_header(stream)
            members[key] = Member(key, shape, dtype, info)
        return members

    @contextlib.contextmanager
    def _guard(self, where: str, what: str) -> Iterator[None]:
        try:
            yield
        except ModelFileError:
            raise
        except _READ_ERRORS as err:
            raise ModelFileError(f"{where}: unreadable {what} ({type(err).__name__}: {err})") from None

    def read(self, key: str) -> np.ndarray:
        """The array of member ``key`` (its header already checked by the caller); never unpickles."""
        member = self.members[key]
        where = f"{self.path}: entry {key!r}"
        if member.info.file_size < member.dtype.itemsize * int(np.prod(member.shape, dtype=object)):
            raise ModelFileError(f"{where}: its header declares {member.shape} {member.dtype}, more than it holds")
        with self._guard(where, "data"), self._zip.open(member.info) as stream:
            array = npy.read_array(stream, allow_pickle=False)
            if stream.read(1):
                raise ValueError("trailing bytes after the array data")
        if array.shape != member.shape or array.dtype != member.dtype:
            raise ModelFileError(f"{where}: the data does not match its header")
        return array

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
