"""``secateurs`` command line: a thin table of sub-commands over the library.

Each entry names a module exposing ``add_parser(subparsers)`` and ``run(args) -> int``; no command holds
logic of its own beyond turning flags into library calls.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import sys

from ._common import UsageError, check_unused_flags, given_flags, handle_errors

COMMANDS: dict[str, str] = {
    "train": "secateurs.cli.train",
    "info": "secateurs.cli.info",
    "report": "secateurs.cli.report",
    "sparsify": "secateurs.cli.sparsify",
    "autoprune": "secateurs.cli.autoprune",
    "explain": "secateurs.cli.explain",
    "prune": "secateurs.cli.prune",
    "finetune": "secateurs.cli.finetune",
    "export": "secateurs.cli.export",
    "profile": "secateurs.cli.profile",
}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows every flag's default, except where its help text already states it or there is none to show
    (``None``, a switch that is off, a required flag)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if ("default" in text.lower() or d is None or d is False or d is argparse.SUPPRESS or d == () or action.required
                or not action.option_strings):
            return text
        return text + " (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump), exit status 2, no abbreviated flags (``--epoch`` must not
    silently mean ``--epochs``) and defaults in ``--help``. Sub-command parsers are of this class too."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _unknown_flags(parser: argparse.ArgumentParser, extras: list[str]) -> None:
    """Exit 2 naming the sub-command (and the closest real flag) for arguments it does not take."""
    import difflib

    flags = [o for a in parser._actions for o in a.option_strings]
    first = next((e for e in extras if e.startswith("-")), extras[0])
    close = difflib.get_close_matches(first.split("=")[0], flags, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    parser.error(f"unrecognized arguments: {' '.join(extras)}{hint}")


def _interrupted_hint(args: argparse.Namespace):
    """Text for Ctrl-C: how to continue when a training state is being saved."""
    state = getattr(args, "save_state", None)

    def hint() -> str:
        if state is None:
            return ""
        if not state.exists():
            return f" (no epoch had finished, so --save-state {str(state)!r} was not written yet)"
        return (f"; the state after the last finished epoch is in {str(state)!r}: run the same command again "
                f"with --resume {str(state)!r} to continue")

    return hint


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(
        prog="secateurs", description="Prune PyTorch networks: cyclical sparsity and AutoBot filter pruning.")
    parser.add_argument("--version", action="version", version=f"secateurs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        importlib.import_module(module).add_parser(sub)
    return parser


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[command]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        _unknown_flags(_subparser(parser, args.command), extras)
    with handle_errors(parser, args.command, _interrupted_hint(args)) as status, contextlib.ExitStack() as stack:
        args._resources = stack  # write locks held until the command ends
        stack.enter_context(_import_path(args))
        stack.enter_context(_one_line_warnings(args.command))
        check_unused_flags(args, given_flags(sys.argv[1:] if argv is None else argv))
        status.code = args.run(args)
    return status.code


@contextlib.contextmanager
def _one_line_warnings(command: str):
    """Library warnings (e.g. a sparsity ramp shorter than --update-every) as one line each, like our errors,
    instead of Python's two-line file:line form."""
    import warnings

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"secateurs {command}: warning: {message}", file=file or sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def _import_path(args):
    """``python -m`` puts the current directory first on ``sys.path``: a checkpoint directory (or files beside it)
    named like a package imported later (tqdm, torch_pruning, timm) would run in its place. Keep it off unless the
    user trusts model code or names a ``module:factory`` of their own with --model (which may live there)."""
    from .._import_path import import_path_without

    model = getattr(args, "model", None)
    own_module = isinstance(model, str) and ":" in model and model.split(":", 1)[0] not in ("torchvision", "timm")
    if getattr(args, "trust_model_code", False) or own_module:
        return contextlib.nullcontext()
    return import_path_without()


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["main", "build_parser", "COMMANDS", "UsageError"]
