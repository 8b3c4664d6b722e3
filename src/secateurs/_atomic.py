"""Atomic writes and the one-writer lock: the lowest floor of secateurs' file output.

``atomic_path`` yields a temporary path beside the target and renames it into place on success (fsync first), so
a crash never leaves a half-written file; ``write_text_atomic`` / ``write_json_atomic`` write through it (JSON with
NaN / infinity as ``null``). ``output_lock`` gives one process at a time the right to write a path. Files follow
the umask. Used by checkpoints (``io``), training states (``train``), schedules, exports and the CLI; imports
nothing of secateurs but ``errors`` (and never torch: a tensor can only reach it if torch is already imported).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import OutputError

__all__ = ["atomic_path", "output_lock", "write_json_atomic", "write_text_atomic"]


def _is_tensor(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``, on failure removed.

    Every file secateurs writes goes through here, so a crash never leaves a half-written output behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        _follow_umask(Path(tmp), is_dir=False)
        yield Path(tmp)
        with open(tmp, "rb+") as f:  # on disk before the rename, so a power cut leaves the old file or the new one
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON to ``path`` through a temporary file in the same directory and an atomic rename."""
    text = json.dumps(_finite_json(obj), indent=2, sort_keys=False, default=_json_default, allow_nan=False)
    write_text_atomic(path, text + "\n")


def _finite_json(obj: Any) -> Any:
    """``obj`` with every NaN / infinity replaced by ``None``: JSON has no such numbers, and bare ``NaN`` tokens
    make a file no strict parser (and no other language) reads."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_json(v) for v in obj]
    if _is_tensor(obj):
        return _finite_json(obj.tolist())
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        return _finite_json(obj.item())
    return obj


def _umask() -> int:
    try:  # thread-safe where available
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _follow_umask(path: Path, is_dir: bool) -> None:
    """mkstemp/mkdtemp create 0600/0700 whatever the umask; give outputs the mode any other tool would."""
    os.chmod(path, (0o777 if is_dir else 0o666) & ~_umask())


def _json_default(o: Any):
    if _is_tensor(o):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


_LOCKED: dict[str, int] = {}  # paths this process holds the write lock of -> nesting depth


@contextlib.contextmanager
def output_lock(path: str | os.PathLike, flag: str = "output") -> Iterator[None]:
    """Hold the exclusive right to write ``path`` (``flock`` on a hidden ``.NAME.lock`` beside it).

    A second process asking for the same path fails at once with :class:`OutputError` (two runs racing for one
    ``--out`` or sharing one ``--save-state`` file), before it does any work. Re-entrant within a process.
    """
    path = Path(path)
    key = os.path.realpath(path)
    if key in _LOCKED:
        _LOCKED[key] += 1
        try:
            yield
        finally:
            _LOCKED[key] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.parent / f".{path.name}.lock"
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputError(flag, path, "another secateurs run is writing it now; wait for it or choose another "
                                          "path") from None
        try:  # the holder we waited for may have unlinked the file: our lock must be on the file at the path
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        _LOCKED[key] = 1
        try:
            yield
        finally:
            del _LOCKED[key]
            with contextlib.suppress(OSError):
                lock.unlink()
    finally:
        os.close(fd)
