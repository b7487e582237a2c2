"""`spamtune export`: a run as a transformers model directory."""

from __future__ import annotations

import argparse
import textwrap

EPILOG = """\
examples:
  spamtune export runs/smollm2 --format hf --out exported/smollm2-spam
  spamtune export runs/smollm2 --format onnx --quantize int8 --out exported/onnx
  spamtune classify exported/onnx --runtime onnx --quantize int8 "WINNER! claim your prize"
  python -c "from transformers import pipeline; \\
    print(pipeline('text-classification', 'exported/smollm2-spam')('WINNER!'))"
"""


def add_parser(sub) -> None:
    p = sub.add_parser("export", formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="write a run as a transformers model directory or an ONNX graph",
                       epilog=textwrap.dedent(EPILOG),
                       description="Write a run as a directory that AutoModelForSequenceClassification."
                                   "from_pretrained loads, with the same probabilities (last_real-pooled runs; "
                                   "--format hf), or as an ONNX graph for ONNX Runtime (--format onnx).")
    p.add_argument("run", help="run directory written by `spamtune train`")
    p.add_argument("--format", default="hf", choices=("hf", "onnx"),
                   help="hf: a transformers model directory; onnx: an ONNX graph for ONNX Runtime (--runtime onnx)")
    p.add_argument("--quantize", choices=("int8",), help="with --format onnx: also write model.int8.onnx (ONNX "
                                                         "Runtime dynamic int8, per-channel weights)")
    p.add_argument("--out", required=True, help="directory to write (atomic)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from spamtune.errors import ConfigError
    from spamtune.export import export_hf, export_onnx

    if args.format == "onnx":
        out = export_onnx(args.run, args.out, overwrite=args.overwrite, quantize=args.quantize)
        print(f"exported {args.run} -> {out} (spamtune classify {out} --runtime onnx ...)")
        return
    if args.quantize:
        raise ConfigError("--quantize goes with --format onnx")
    out = export_hf(args.run, args.out, overwrite=args.overwrite)
    print(f"exported {args.run} -> {out} (AutoModelForSequenceClassification.from_pretrained({str(out)!r}))")
