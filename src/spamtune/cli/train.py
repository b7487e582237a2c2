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
  spamtune train --data-dir data/ --out runs/ddp --nproc 2   # DistributedDataParallel: 2 processes (torchrun)
  torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29400 \
      -m spamtune train --data-dir data/ --out runs/big --device cuda   # the same, on two machines
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
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="train with N processes on this machine (torchrun --standalone; --batch-size is per "
                        "process, so the global batch is N times it)")
    add_dataclass_args(p, TrainArgs)
    p.set_defaults(func=run)


def launch_torchrun(nproc: int, argv: list[str]) -> None:
    """Become `torchrun --standalone --nproc-per-node N` running this command (without --nproc): exec, not a child,
    so a scheduler's SIGTERM reaches torchrun, which stops its workers."""
    import os
    import sys

    from spamtune.devices import launched_by_torchrun
    from spamtune.errors import ConfigError

    if nproc < 1:
        raise ConfigError("--nproc must be at least 1")
    if launched_by_torchrun():
        raise ConfigError("--nproc launches torchrun itself; under torchrun, drop --nproc")
    rest, skip = [], False
    for i, a in enumerate(argv):
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            rest.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "spamtune", *rest]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, cmd)


def run(args: argparse.Namespace) -> None:
    from spamtune.training import resume_run, train_run

    if args.nproc != 1:
        launch_torchrun(args.nproc, args.argv)
    if args.resume:
        resume_run(args.resume)
        return
    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainArgs)}
    train_run(TrainArgs(**fields), args.data_dir, args.out, overwrite=args.overwrite)
