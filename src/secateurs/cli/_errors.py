"""The one place user errors become a line on stderr and exit status 2."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from dataclasses import dataclass

from ..errors import GraphError, InputError


class UsageError(Exception):
    """A bad flag value. The message names the flag and the value; the CLI prints it and exits with 2."""


@dataclass
class _Status:
    code: int = 0


@contextlib.contextmanager
def handle_errors(parser: argparse.ArgumentParser, command: str, interrupted_hint=None):
    """Turn expected user errors into one line on stderr and exit status 2 (no traceback).

    ``SECATEURS_DEBUG=1`` re-raises so developers still get the traceback. ``interrupted_hint``: a callable
    giving text to append to the Ctrl-C message (how to continue the run).
    """
    status = _Status()
    try:
        yield status
    except (UsageError, InputError, GraphError, FileNotFoundError, FileExistsError, IsADirectoryError,
            NotADirectoryError, PermissionError) as e:
        if os.environ.get("SECATEURS_DEBUG"):
            raise
        # by type: our errors format themselves; OSErrors carry the path; others (GraphError: a model the tracer
        # cannot handle is the user's input, not our crash) their first argument
        if getattr(e, "short", None):  # a several-line library message with a one-line form (MissingDataError)
            msg = e.short
        elif isinstance(e, (InputError, UsageError)):
            msg = str(e)
        elif isinstance(e, OSError) and e.filename is not None:
            msg = f"{e.filename}: {e.strerror or e}"
        else:
            msg = e.args[0] if e.args else type(e).__name__
        msg = " ".join(ln.strip() for ln in str(msg).splitlines() if ln.strip())  # one line, whatever it said
        print(f"secateurs {command}: error: {msg}", file=sys.stderr)
        status.code = 2
        raise SystemExit(2)
    except KeyboardInterrupt:
        hint = interrupted_hint() if interrupted_hint is not None else ""
        print(f"secateurs {command}: interrupted; no output was written in place{hint}", file=sys.stderr)
        raise SystemExit(130)
