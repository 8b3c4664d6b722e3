"""``secateurs export``: write a checkpoint (dense, pruned or sparse) as TorchScript or ONNX for deployment, or
as a compressed sparse checkpoint directory (non-zero values + the smallest index per tensor)."""
from __future__ import annotations

import argparse

from . import _common as c


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint to TorchScript, ONNX or a compressed sparse checkpoint",
                       description="Rebuild a checkpoint (a pruned one at its pruned widths) and trace it on a "
                                   "random batch of its input shape into a TorchScript (.pt) or ONNX (.onnx) file; "
                                   "the ONNX batch dimension is dynamic. --format sparse writes a checkpoint "
                                   "directory whose sparse tensors are stored as non-zero values plus a bitmask, "
                                   "delta or CSR index (whichever is smallest); secateurs.load reads it back.")
    p.add_argument("--checkpoint", required=True, type=c.existing_dir("--checkpoint"), metavar="DIR",
                   help="checkpoint directory to export")
    p.add_argument("--format", required=True, choices=("torchscript", "onnx", "sparse"), help="output format")
    p.add_argument("--out", required=True, type=c.path_arg("--out"), metavar="PATH",
                   help="output file (.pt for torchscript, .onnx) or directory (sparse)")
    p.add_argument("--opset", type=c.int_at_least("--opset", 7, 21), default=17, help="ONNX opset (default 17)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file or directory")
    c.add_trust_arg(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..structured import export_onnx, export_torchscript

    c.claim_output(args, "--out", args.out, "dir" if args.format == "sparse" else "file",
                   [("--checkpoint", args.checkpoint)])
    if args.format == "sparse":
        return _sparse(args)
    ckpt = c.load_checkpoint_arg(args.checkpoint, trust=args.trust_model_code)
    if not ckpt.spec.input_shape:
        raise c.UsageError(f"--checkpoint {str(args.checkpoint)!r}: model.json has no input_shape to trace with")
    example = torch.randn(2, *ckpt.spec.input_shape, generator=torch.Generator().manual_seed(0))
    if args.format == "onnx":
        try:
            import onnx
            import onnx.checker
        except ImportError:
            raise c.UsageError("--format onnx needs the onnx package (pip install onnx)") from None
        import warnings

        try:
            with warnings.catch_warnings(record=True) as said:  # the exporter's, said once each if it succeeds
                warnings.simplefilter("always")
                export_onnx(ckpt.model, example, args.out, opset=args.opset)
        except (onnx.checker.ValidationError, RuntimeError) as e:  # torch.onnx's errors are RuntimeErrors
            # the exporter or the checker refused this model at this opset; nothing was written (atomic)
            lines = [ln for ln in str(e).splitlines() if ln.strip()]
            raise c.UsageError(f"--opset {args.opset}: cannot export {ckpt.spec.name!r} to ONNX at this opset: "
                               f"{lines[0] if lines else type(e).__name__} (try a newer --opset; the default is "
                               "17)") from None
        for text, w in {str(w.message): w for w in said}.items():
            warnings.warn_explicit(text, w.category, w.filename, w.lineno)
    else:
        export_torchscript(ckpt.model, example, args.out)
    print(f"{ckpt.spec.name} ({args.checkpoint}) -> {args.out} ({args.format})")
    return 0


def _sparse(args: argparse.Namespace) -> int:
    from ..sparse import save_sparse

    ckpt = c.load_checkpoint_arg(args.checkpoint, trust=args.trust_model_code)
    written = save_sparse(args.out, ckpt.model, ckpt.spec, ckpt.summary, overwrite=args.overwrite)
    counts = {e: list(written.encodings.values()).count(e) for e in sorted(set(written.encodings.values()))}
    print(f"{args.checkpoint} -> {args.out} (sparse): weights {written.bytes:,} bytes, "
          f"{written.bytes / max(written.dense_bytes, 1):.4f} of dense {written.dense_bytes:,}; tensors "
          + ", ".join(f"{n} {e}" for e, n in counts.items()))
    return 0
