"""`colbert export onnx CHECKPOINT OUT`: a checkpoint's query and document encoders as ONNX (docs/onnx.md)."""

from __future__ import annotations

import argparse
from typing import Any

from colbert.cli import UsageError, add_command, emit, format_fields


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers, "export", help="export a checkpoint for other runtimes (ONNX encoders)",
        description="Export a checkpoint's query and document encoders (backbone, projection, normalisation) as "
                    "ONNX models with dynamic batch and sequence axes, int8 variants, the tokenizer and a JSON "
                    "sidecar (colbert_onnx.json) that says how to build the inputs. Needs the onnx extra.",
        example="colbert export onnx colbert-ir/colbertv2.0 ./colbertv2-onnx\n"
                "colbert export onnx ./checkpoints/mine ./mine-onnx --no-int8")
    parser.add_argument("format", choices=["onnx"], help="the export format")
    parser.add_argument("checkpoint", help="a checkpoint folder or hub name")
    parser.add_argument("out", help="the folder to write")
    parser.add_argument("--no-int8", dest="int8", action="store_false",
                        help="skip the int8 dynamically quantised models")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    try:
        from colbert.export.onnx import SIDECAR, export_onnx
    except ImportError as e:
        raise UsageError(f"ONNX export needs the onnx extra ({e}); pip install 'colbert[onnx]'") from e
    out = export_onnx(args.checkpoint, args.out, quantize=args.int8, opset=args.opset)
    files = sorted(p.name for p in out.iterdir() if p.suffix in (".onnx", ".json"))
    emit(args, {"out": str(out), "sidecar": str(out / SIDECAR), "files": files},
         table=lambda d: format_fields([("out", d["out"]), ("sidecar", d["sidecar"]), ("files", ", ".join(d["files"]))]))
