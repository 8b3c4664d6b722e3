"""A flag given where it does nothing is refused, naming it, rather than silently ignored."""
from __future__ import annotations

from ._errors import UsageError


def given_flags(argv) -> frozenset[str]:
    """The long options written on the command line (``--flag`` or ``--flag=value``; abbreviations are off), so a
    flag that a default would hide can still be told apart from one the user gave."""
    out = set()
    for token in argv:
        if token == "--":
            break
        if token.startswith("--"):
            out.add(token.split("=", 1)[0])
    return frozenset(out)


def _unused_rules(args):
    """(flags, why they do nothing here) for this command line: a flag given where it has no effect is refused,
    naming it, rather than silently ignored (as the latency flags with a MACs target)."""
    g = getattr
    if g(args, "optimizer", "sgd") != "sgd":
        yield ("--momentum", "--nesterov", "--no-nesterov"), f"applies to --optimizer sgd, not {args.optimizer}"
    if hasattr(args, "distill_from") and args.distill_from is None:
        yield ("--distill-weight", "--temperature"), "applies with --distill-from DIR (distillation is off)"
    if hasattr(args, "distill") and not args.distill:
        yield ("--distill-weight", "--temperature"), "applies with --distill (distillation is off)"
    if g(args, "finetune_epochs", 1) <= 0:
        yield (("--finetune-lr", "--finetune-weight-decay", "--finetune-momentum", "--finetune-batch-size"),
               "applies to fine-tuning; give --finetune-epochs E > 0")
    if g(args, "compare_macs", None) == "off":
        yield ("--recovery-steps",), "applies with --compare-macs on (the comparison is off)"
    if args.command == "prune" and args.criterion != "taylor":
        yield ("--calib-batches", "--batch-size"), f"applies to --criterion taylor, not {args.criterion}"
    if args.command == "sparsify":
        if args.schedule != "oneshot":
            yield ("--prune-at",), f"applies to --schedule oneshot, not {args.schedule}"
        else:
            yield (("--ramp", "--initial-sparsity", "--begin-epochs"),
                   "applies to --schedule gmp or cyclical, not oneshot")
    if args.command == "report" and args.no_latency:
        yield ("--threads", "--repeats"), "applies to the latency measurement, which --no-latency skips"
    if hasattr(args, "input_shape"):  # the model-source commands (info, explain, profile)
        if g(args, "checkpoint", None) is not None:
            yield (("--data", "--data-dir", "--input-shape", "--num-classes"),
                   "applies with --model; a --checkpoint records its own input shape and classes")
        elif args.input_shape is None:
            yield ("--num-classes",), "applies with --input-shape (--data gives the class count)"


def check_unused_flags(args, given: frozenset[str]) -> None:
    """Refuse the first flag of ``given`` that this command line would ignore (see ``_unused_rules``)."""
    for flags, why in _unused_rules(args):
        for flag in flags:
            if flag in given:
                value = getattr(args, flag[2:].replace("-", "_").removeprefix("no_"), None)
                shown = "" if isinstance(value, bool) or value is None else f" {value}"
                raise UsageError(f"{flag}{shown}: {why}")
