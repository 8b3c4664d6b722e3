"""``secateurs export``: write a checkpoint (dense, pruned or sparse) as TorchScript or ONNX for deployment."""
from __future__ import annotations

import argparse
from pathlib import Path

from . import _common as c


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint to TorchScript or ONNX",
                       description="Rebuild a checkpoint (a pruned one at its pruned widths) and trace it on a "
                                   "random batch of its input shape into a TorchScript (.pt) or ONNX (.onnx) file; "
                                   "the ONNX batch dimension is dynamic.")
    p.add_argument("--checkpoint", required=True, type=c.existing_dir("--checkpoint"), metavar="DIR",
                   help="checkpoint directory to export")
    p.add_argument("--format", required=True, choices=("torchscript", "onnx"), help="output format")
    p.add_argument("--out", required=True, type=Path, metavar="FILE", help="file to write (.pt or .onnx)")
    p.add_argument("--opset", type=c.positive_int("--opset"), default=17, help="ONNX opset (default 17)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..structured import export_onnx, export_torchscript

    if args.out.exists() and not args.overwrite:
        raise c.UsageError(f"--out: {str(args.out)!r} already exists; pass --overwrite to replace it")
    ckpt = c.load_checkpoint_arg(args.checkpoint)
    if not ckpt.spec.input_shape:
        raise c.UsageError(f"--checkpoint {str(args.checkpoint)!r}: model.json has no input_shape to trace with")
    example = torch.randn(2, *ckpt.spec.input_shape, generator=torch.Generator().manual_seed(0))
    if args.format == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise c.UsageError("--format onnx needs the onnx package (pip install onnx)") from None
        export_onnx(ckpt.model, example, args.out, opset=args.opset)
    else:
        export_torchscript(ckpt.model, example, args.out)
    print(f"{ckpt.spec.name} ({args.checkpoint}) -> {args.out} ({args.format})")
    return 0
