"""Where dataset files are looked for, and how they are fetched when they are missing.

Every file-backed dataset searches the same places, in this order:

1. the ``data_dir`` argument (CLI ``--data-dir``), the directory itself or its ``<dataset>`` subdirectory --
   and, when it is given, *only* there: an explicit directory is used or the load fails naming the missing
   files, never silently replaced by another copy of the data;
2. ``$SECATEURS_DATA``, the directory itself or its ``<dataset>`` subdirectory;
3. system directories (``SYSTEM_DATA_DIRS``; Debian's ``dataset-*`` packages install under
   ``/usr/share/datasets/<dataset>``);
4. the download cache, ``$XDG_CACHE_HOME/secateurs/<dataset>`` (default ``~/.cache/secateurs/<dataset>``).

Only when all of these fail is the canonical source contacted, and only if downloading is allowed
(``download=True``, or ``download=None`` with ``SECATEURS_OFFLINE`` unset). Downloads go into ``data_dir`` when
given (so the next run finds them in step 1), else into the cache. They are written to a temporary file in the
target directory and renamed into place, so an interrupted download never leaves a truncated file that a later
run would trust.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

#: Read-only system locations searched after ``data_dir`` and ``$SECATEURS_DATA``. A module-level tuple so tests
#: (and unusual installations) can point it elsewhere.
SYSTEM_DATA_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets"),)

DATA_ENV = "SECATEURS_DATA"
OFFLINE_ENV = "SECATEURS_OFFLINE"
_DOWNLOAD_TIMEOUT_S = 60.0


def cache_root() -> Path:
    """The download cache, read from the environment at call time (never at import)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "secateurs"


def download_allowed(download: bool | None) -> bool:
    """``True``/``False`` are explicit; ``None`` means "yes, unless ``SECATEURS_OFFLINE`` is set to a true value"."""
    if download is not None:
        return bool(download)
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("", "0", "false", "no")


def candidate_dirs(data_dir: str | os.PathLike[str] | None, subdirs: Sequence[str]) -> list[Path]:
    """All directories to search, in priority order, without duplicates (they need not exist)."""
    roots: list[Path] = []
    if data_dir is not None:  # explicit: no fallback to other copies
        roots.append(Path(data_dir).expanduser())
    else:
        env = os.environ.get(DATA_ENV)
        if env:
            roots.append(Path(env).expanduser())
        roots.extend(SYSTEM_DATA_DIRS)
        roots.append(cache_root())
    out: list[Path] = []
    for root in roots:
        for d in (root, *(root / s for s in subdirs)):
            if d not in out:
                out.append(d)
    return out


def find_dir(candidates: Iterable[Path], is_complete: Callable[[Path], bool]) -> Path | None:
    """The first candidate that holds a complete copy of the data."""
    for d in candidates:
        if d.is_dir() and is_complete(d):
            return d
    return None


def download_target(data_dir: str | os.PathLike[str] | None, name: str) -> Path:
    """Downloads go where the next search looks first: ``data_dir`` if given, else the cache."""
    return Path(data_dir).expanduser() if data_dir is not None else cache_root() / name


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_url(url: str, dest: Path, md5: str | None = None) -> Path:
    """Fetch ``url`` to ``dest`` atomically (temp file in the same directory, then ``os.replace``).

    The checksum is verified before the rename, so ``dest`` either does not exist or is the published file.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as resp:
            shutil.copyfileobj(resp, out, length=1 << 20)
            out.flush()
            os.fsync(out.fileno())
        if md5 is not None and (got := _md5(tmp)) != md5:
            raise OSError(f"checksum mismatch for {url}: md5 {got}, expected {md5}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def missing_data_error(
    name: str,
    *,
    needed: str,
    searched: Sequence[Path],
    debian_package: str | None,
    url: str,
    download_error: str | None,
    missing: Sequence[str] = (),
) -> FileNotFoundError:
    """One error that says what was looked for, where, why nothing was fetched, and every way to fix it."""
    lines = [f"dataset {name!r}: could not find {needed}."]
    if missing:
        lines.append(f"The given data_dir lacks: {', '.join(missing)}")
    lines.append("Searched (in order):")
    lines += [f"  {d}" for d in searched]
    if download_error is None:
        lines.append(f"Download not attempted (download=False or {OFFLINE_ENV} is set).")
    else:
        lines.append(f"Download from {url} failed: {download_error}")
    lines.append("Provide the data in one of these ways:")
    lines.append(f"  * pass data_dir=DIR (CLI: --data-dir DIR) with the files in DIR or DIR/{name}")
    lines.append(f"  * set {DATA_ENV}=DIR with the files in DIR or DIR/{name}")
    if debian_package:
        lines.append(f"  * install the Debian package: apt-get install {debian_package}")
    lines.append(f"  * go online and allow downloading (download=True, {OFFLINE_ENV} unset); files go to data_dir "
                 f"or {cache_root() / name}")
    short = [f"dataset {name!r}: could not find {needed}" + (f" (the data dir lacks {', '.join(missing)})"
                                                              if missing else ""),
             "searched " + ", ".join(str(d) for d in searched),
             f"download not attempted ({OFFLINE_ENV} is set or download=False)" if download_error is None
             else f"download from {url} failed: {download_error}",
             f"give --data-dir DIR or {DATA_ENV}=DIR" + (f", or apt-get install {debian_package}"
                                                          if debian_package else "")]
    return MissingDataError("\n".join(lines), short="; ".join(short))


class MissingDataError(FileNotFoundError):
    """A dataset's files were not found: the message says every way to fix it, over several lines; ``short`` says
    the same on one line (the command line's error)."""

    def __init__(self, message: str, *, short: str):
        super().__init__(message)
        self.short = short

    def __reduce__(self):  # keyword-only ``short``: the default pickling would call __init__(message) alone
        return _missing_data_error, (str(self), self.short)


def _missing_data_error(message: str, short: str) -> "MissingDataError":
    return MissingDataError(message, short=short)
