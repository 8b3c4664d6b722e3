"""``secateurs`` command line: a thin table of sub-commands over the library.

Each entry names a module exposing ``add_parser(subparsers)`` and ``run(args) -> int``; no command holds
logic of its own beyond turning flags into library calls.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import sys

from ._common import UsageError, handle_errors

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
}


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump) and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(
        prog="secateurs", description="Prune PyTorch networks: cyclical sparsity and AutoBot filter pruning.")
    parser.add_argument("--version", action="version", version=f"secateurs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with handle_errors(parser, args.command) as status, contextlib.ExitStack() as stack:
        args._resources = stack  # write locks held until the command ends
        stack.enter_context(_import_path(args))
        status.code = args.run(args)
    return status.code


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
