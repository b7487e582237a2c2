"""Learning-rate sweep with the real trainer: one frozen-prefix cache, then for each learning rate the same
initial weights, seeds and batches, `fit`, and the test accuracy of the best epoch (by validation loss).
Single seed: on a 300-message test split one message is 0.33 points.

    .venv/bin/python -m benchmarks.lr_sweep --data-dir data --lrs 5e-5 2e-4 5e-4 1e-3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import publish
from spamtune.batching import TextDataset, create_dataloader
from spamtune.config import TrainArgs
from spamtune.data import read_split
from spamtune.runs import load_weights_into
from spamtune.tokenizers import load_tokenizer
from spamtune.training import fit, setup
from spamtune.training.loss import calc_accuracy_loader
from spamtune.training.prefix_cache import build_prefix_cache, collate_hidden
from spamtune.weights import read_safetensors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--trainable", default="last_block")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--lrs", type=float, nargs="+", default=[5e-5, 2e-4, 5e-4, 1e-3])
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainArgs(model=a.model, trainable=a.trainable, epochs=a.epochs, lr=a.lrs[0])
        s = setup(args, a.data_dir, tmp)
        if not s.model.cached:
            raise SystemExit("this sweep needs a cacheable configuration")
        trained = [p for p in s.model.module.parameters() if p.requires_grad]
        init = [p.detach().clone() for p in trained]
        df = read_split(Path(a.data_dir) / "test.csv")
        tok = load_tokenizer(s.run_config.tokenizer)
        test_ds = TextDataset(df["Text"], df["Label"], tok, s.run_config.max_length)
        test_loader = create_dataloader(build_prefix_cache(s.model.classifier, test_ds, None, desc="caching (test)"),
                                        buckets=True, collate_fn=collate_hidden)
        train_cache = s.data.train_loader.dataset

        rows = []
        for lr in a.lrs:
            with torch.no_grad():
                for p, p0 in zip(trained, init):
                    p.copy_(p0)
            s.args = TrainArgs(**{**args.to_dict(), "lr": lr})
            s.optim.optimizer = torch.optim.AdamW(trained, lr=lr, weight_decay=args.weight_decay)
            s.data.train_loader = create_dataloader(train_cache, args.batch_size, shuffle=True, drop_last=True,
                                                    buckets=True, seed=args.seed, collate_fn=collate_hidden)
            s.run_dir = Path(tmp) / f"lr{lr:g}"
            s.run_dir.mkdir()
            t0 = time.perf_counter()
            state = fit(s)
            seconds = time.perf_counter() - t0
            s.model.step.eval()
            last_test = calc_accuracy_loader(test_loader, s.model.forward)
            load_weights_into(s.model.module, read_safetensors(s.run_dir / "model.safetensors"), "best")
            best_test = calc_accuracy_loader(test_loader, s.model.forward)
            best = state.best_epoch or 1
            rows.append(f"| {lr:g} | {best} | {state.best_val_loss:.4f} | "
                        f"{state.history.val_acc_full[best - 1]:.2%} | **{best_test:.2%}** | "
                        f"{last_test:.2%} | {seconds:.0f} |")
    body = "\n".join([
        f"{a.model}, `--trainable {a.trainable}`, {a.epochs} epochs, seed 123, everything else default.", "",
        "| lr | best epoch (val loss) | best val loss | val acc there | test acc there | test acc, last epoch "
        "| fit s |", "|---|---|---|---|---|---|---|", *rows])
    publish(f"Learning rate for {a.model} ({a.trainable})", body, not a.no_record)


if __name__ == "__main__":
    main()
