"""`spamtune train`: fine-tune a classifier (book ch. 6 defaults), or `--resume` a killed run."""

from __future__ import annotations

import argparse
import dataclasses
import textwrap

from spamtune.cli.args import add_dataclass_args
from spamtune.config import TrainArgs

EPILOG = """\
examples:
  spamtune train --data-dir data/ --out runs/smollm2
  spamtune train --data-dir data/ --out runs/lora --trainable lora --lora-rank 8
  spamtune train --data-dir data/ --out runs/g2 --model gpt2-small --padding longest_train
  spamtune train --data-dir data/ --out runs/t --lr-schedule cosine --warmup-ratio 0.1 \\
      --class-weights 2,1                        # a wrong ham costs twice in the loss
  spamtune train --resume runs/smollm2          # continue a killed run
  spamtune train --data-dir data/ --out runs/hf --backend hf --model all-minilm-l6-v2 \\
      --trainable all                            # transformers' AutoModel...
"""


def add_parser(sub) -> None:
    p = sub.add_parser("train", formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="fine-tune a classifier (book ch. 6 defaults)", epilog=textwrap.dedent(EPILOG),
                       description="Fine-tune a pretrained decoder as a classifier: swap the vocabulary head for a "
                                   "class head, train the chosen scope with AdamW, keep the best epoch by "
                                   "validation loss. Frozen layers run once per message (exact, much faster).")
    p.add_argument("--data-dir", default="data", help="directory written by `spamtune prepare` (default: data)")
    p.add_argument("--out", default="runs/latest", help="run directory to create (default: runs/latest)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last finished epoch")
    add_dataclass_args(p, TrainArgs)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from spamtune.training import resume_run, train_run

    if args.resume:
        resume_run(args.resume)
        return
    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainArgs)}
    train_run(TrainArgs(**fields), args.data_dir, args.out, overwrite=args.overwrite)
