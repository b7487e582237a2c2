"""What the model check's explanation costs and whether it is faithful (the pipeline issue's figures).

    python -m benchmarks.explain runs/demo --data-dir data                 # both methods, every test spam
    python -m benchmarks.explain runs/demo --data-dir data --methods integrated_gradients --steps 8,32 --limit 40

For each test spam of at least four words and each method (inference/explain.py): the words the method credits
with pushing P(spam) up, the time it took (one message at a time; occlusion's words, or integrated gradients'
steps, in one batch), and faithfulness: P(spam) of the message with its top-3 attributed words removed (deleted
from the text, not masked as the occlusion does) against with 3 random words removed (the mean of 5 draws), both
through the fine-tuned model alone. A faithful explanation's words matter more than random ones: removing them
lowers P(spam) more. For integrated gradients, completeness (the attributions sum to P(message) - P(baseline)) is
reported as the mean absolute gap, which shrinks with more steps.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.common import publish
from spamtune.inference import TextClassifier
from spamtune.inference.explain import WordAttributor


def p_spam(clf: TextClassifier, attributor: WordAttributor, texts: list[str]) -> np.ndarray:
    """P(spam) by the fine-tuned model alone (the model check's own probability)."""
    logits = clf.model_logits(texts)[0]
    z = torch.from_numpy(logits) / attributor.temperature
    return torch.softmax(z, dim=-1)[:, clf.positive_id].numpy()


def without(words: list[str], drop: set[int]) -> str:
    return " ".join(w for i, w in enumerate(words) if i not in drop)


def measure(clf: TextClassifier, texts: list[str], method: str, steps: int, seed: int = 0) -> dict[str, float]:
    pipeline = clf.pipeline
    assert pipeline is not None
    model_check = pipeline.checks[0]
    attributor = WordAttributor(clf, getattr(model_check, "temperature", 1.0), steps, method)
    rng = np.random.default_rng(seed)
    spam = clf.positive_id
    assert spam is not None
    seconds, base, top, rand, gaps = [], [], [], [], []
    for text in texts:
        start = time.perf_counter()
        words = attributor.attributions(text, spam)  # in text order, as the tokenizer spelled them
        seconds.append(time.perf_counter() - start)
        spelled = [w for w, _ in words]
        ranked = sorted(range(len(words)), key=lambda i: -words[i][1])  # most credited towards spam first
        variants = [without(spelled, set(ranked[:3]))]
        variants += [without(spelled, set(rng.choice(len(spelled), 3, replace=False).tolist())) for _ in range(5)]
        p = p_spam(clf, attributor, [text, *variants])
        base.append(p[0])
        top.append(p[1])
        rand.append(p[2:].mean())
        if method == "integrated_gradients":
            gaps.append(abs(sum(a for _, a in words) - attributor.path_gap(text, spam)))
    b, t, r = map(np.asarray, (base, top, rand))
    return {"n": len(texts), "steps": steps, "ms": 1000 * float(np.mean(seconds)), "p": float(b.mean()),
            "p_top": float(t.mean()), "p_random": float(r.mean()), "drop_top": float((b - t).mean()),
            "drop_random": float((b - r).mean()), "top_beats_random": float(((b - t) > (b - r)).mean()),
            "completeness_gap": float(np.mean(gaps)) if gaps else None}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--data-dir", type=Path, default=Path("data"))
    ap.add_argument("--methods", default="occlusion,integrated_gradients", help="comma-separated (default: both)")
    ap.add_argument("--steps", default="16", help="integrated gradients: comma-separated steps (default: 16)")
    ap.add_argument("--limit", type=int, help="at most this many test spam")
    ap.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = ap.parse_args(argv)

    clf = TextClassifier.load(args.run)
    test = pd.read_csv(args.data_dir / "test.csv")
    spam = [t for t in test[test["Label"] == clf.positive_id]["Text"] if len(t.split()) >= 4][: args.limit]
    rows = ["| method | test spam | ms per message | mean P(spam) | - top-3 words | - 3 random words | drop top-3 | "
            "drop random | top-3 drop larger | completeness gap |", "|---|---|---|---|---|---|---|---|---|---|"]
    runs = [(m, int(k)) for m in args.methods.split(",") for k in (args.steps.split(",")
                                                                    if m == "integrated_gradients" else ["0"])]
    for method, steps in runs:
        m = measure(clf, spam, method, steps)
        name = method if method == "occlusion" else f"{method} ({steps} steps)"
        gap = "-" if m["completeness_gap"] is None else f"{m['completeness_gap']:.4f}"
        rows.append(f"| {name} | {m['n']} | {m['ms']:.0f} | {m['p']:.3f} | {m['p_top']:.3f} | {m['p_random']:.3f} | "
                    f"{m['drop_top']:.3f} | {m['drop_random']:.3f} | {m['top_beats_random']:.0%} | {gap} |")
        print(rows[-1], flush=True)
    body = (f"Run {args.run} ({clf.run.run_config.model}, {clf.run.run_config.trainable}); the model check's P(spam) "
            "(calibrated); baseline and occlusion: pad tokens; one message at a time.\n\n" + "\n".join(rows))
    publish("Explanations: cost and faithfulness", body, record=not args.no_record)


if __name__ == "__main__":
    main()
