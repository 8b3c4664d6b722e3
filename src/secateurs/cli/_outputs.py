"""Output paths claimed before any work: never an input, never replaced without --overwrite, locked while the
command runs; and the --save-state / --resume files of the training commands."""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from ._errors import UsageError


def _resolved(path) -> Path:
    return Path(os.path.abspath(Path(path).expanduser())).resolve()


def check_not_input(flag: str, out, inputs) -> None:
    """Refuse an output that equals, contains or lies inside an input (``inputs``: (flag, path) pairs)."""
    from ..errors import OutputError

    o = _resolved(out)
    for in_flag, path in inputs:
        if path is None:
            continue
        i = _resolved(path)
        if o == i:
            raise OutputError(flag, out, f"is the {in_flag} input; writing it would destroy the input")
        if o in i.parents:
            raise OutputError(flag, out, f"contains the {in_flag} input {str(path)!r}; replacing it would delete "
                                         "the input")
        if i in o.parents:
            raise OutputError(flag, out, f"lies inside the {in_flag} input {str(path)!r}; write outputs elsewhere")


def claim_output(args, flag: str, out, kind: str = "dir", inputs=()) -> None:
    """Before any work: check ``out`` against the inputs and --overwrite, take its write lock for the rest of the
    command (a second run on the same path fails now, not after its work) and clean up a killed run's debris.

    ``kind``: "dir" (a checkpoint directory) or "file".
    """
    from ..io import CheckpointExistsError, _check_replaceable, output_lock, recover

    if out is None:
        return
    out = Path(out)
    check_not_input(flag, out, inputs)
    if out.exists() or out.is_symlink():
        if not getattr(args, "overwrite", False):
            raise UsageError(f"{flag}: {str(out)!r} already exists; pass --overwrite to replace it")
        if kind == "dir":
            try:
                _check_replaceable(out)
            except CheckpointExistsError as e:
                raise UsageError(f"{flag}: {e}") from None
        elif out.is_symlink() or not out.is_file():
            raise UsageError(f"{flag}: {str(out)!r} exists and is not a regular file; refusing to replace it")
    if not out.parent.exists():
        for parent in out.parents:
            if parent.exists() and not parent.is_dir():
                raise UsageError(f"{flag}: {str(parent)!r} is not a directory")
    if not _writer_rank():
        return
    resources(args).enter_context(output_lock(out, flag))
    for note in recover(out):
        print(f"secateurs: {flag}: {note}", file=sys.stderr)


def _writer_rank() -> bool:
    """Under torchrun only rank 0 writes (and locks); read from the environment, as the process group may not
    exist yet when outputs are claimed."""
    return os.environ.get("RANK", "0") == "0"


def resources(args) -> contextlib.ExitStack:
    """What a command holds until it ends (write locks); ``main`` closes it."""
    stack = getattr(args, "_resources", None)
    if stack is None:
        stack = args._resources = contextlib.ExitStack()
    return stack


def data_inputs(args) -> list:
    return [("--data-dir", getattr(args, "data_dir", None))]


def check_out(args, inputs=()) -> None:
    """--out (a checkpoint directory) and --save-state of a training command, claimed before any work."""
    ins = [("--checkpoint", getattr(args, "checkpoint", None)), ("--resume", getattr(args, "resume", None)),
           ("--distill-from", getattr(args, "distill_from", None)),
           ("--latency-profile", getattr(args, "latency_profile", None)), *data_inputs(args), *inputs]
    state = getattr(args, "save_state", None)
    if state is not None:  # every input but --resume, which the state file may be (a resumed run goes on saving)
        check_not_input("--save-state", state, [i for i in ins if i[0] != "--resume"])
    check_state_paths(args, state, getattr(args, "resume", None))
    claim_output(args, "--out", args.out, "dir", ins)
    if state is not None:
        if _writer_rank():
            resources(args).enter_context(_lock(state, "--save-state"))


def _lock(path, flag):
    from ..io import output_lock

    return output_lock(path, flag)


def check_state_paths(args, state_path: Path | None, resume: Path | None) -> None:
    """--save-state / --resume: the file lives outside --out (which is written once, at the end), and an existing
    state file is only replaced when it is the one being resumed or --overwrite is given."""
    out = Path(args.out).resolve() if getattr(args, "out", None) else None
    for flag, path in (("--save-state", state_path), ("--resume", resume)):
        if path is not None and out is not None and (path.resolve() == out or out in path.resolve().parents):
            raise UsageError(f"{flag} {str(path)!r}: keep the state file outside --out {str(args.out)!r} (the "
                             "output directory is written only when the run completes)")
    if resume is not None and not resume.is_file():
        raise UsageError(f"--resume: {str(resume)!r} is not a file")
    if state_path is None or not (state_path.exists() or state_path.is_symlink()):
        return
    if state_path.is_symlink():  # the state is written by an atomic rename, which would replace the link itself
        raise UsageError(f"--save-state {str(state_path)!r} is a symbolic link; refusing to replace it (a state "
                         "is written by renaming over its path): give the file it points to, "
                         f"{str(state_path.resolve())!r}")
    if not state_path.is_file():
        raise UsageError(f"--save-state {str(state_path)!r} exists and is not a regular file; refusing to replace it")
    if resume is not None and state_path.resolve() == resume.resolve():
        return  # the resumed run's own state: read by --resume's checks, replaced as the run goes on
    if not getattr(args, "overwrite", False):
        raise UsageError(f"--save-state {str(state_path)!r} already exists (an earlier run's state?); resume it "
                         "with --resume, or pass --overwrite to replace it")
    from ..train_state import ResumeError, read_train_state

    try:  # --overwrite replaces an earlier run's state, never some other file that happens to be there
        read_train_state(state_path)
    except ResumeError as e:  # its reason: not a state at all, or one written by a newer secateurs
        raise UsageError(f"--save-state: {e}; refusing to replace it, even with --overwrite (which replaces only a "
                         "training state this version reads)") from None
