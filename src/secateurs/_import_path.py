"""Keeping the current directory (and a checkpoint's own directories) off ``sys.path``; imports nothing heavy, so
the CLI can use it before torch is imported."""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

__all__ = ["import_path_without"]


@contextlib.contextmanager
def import_path_without(dirs: tuple[str | os.PathLike, ...] = ()) -> Iterator[None]:
    """Temporarily drop the current directory (``''``, ``'.'``, the cwd) and ``dirs`` from ``sys.path``.

    ``python -m``, ``torchrun`` and notebooks put the cwd first on ``sys.path``; a checkpoint directory (or a file
    beside it) named like a package imported lazily (torch's own tqdm, torch_pruning, timm) would then be imported
    in its place. The removed entries are put back afterwards, at their old positions.
    """
    banned = {os.path.realpath(os.getcwd())}
    banned.update(os.path.realpath(d) for d in dirs)
    saved = list(sys.path)

    def bad(entry: str) -> bool:
        return entry in ("", ".") or os.path.realpath(entry) in banned

    sys.path[:] = [e for e in saved if not bad(e)]
    try:
        yield
    finally:
        added = [e for e in sys.path if e not in saved]  # keep entries imports added meanwhile (rare)
        sys.path[:] = saved + added
