"""The book's sanity checks on the embedded model, measured: load time, parameter count, greedy generation,
and the zero-shot 'is this spam?' baseline on the test split.

    .venv/bin/python -m benchmarks.model_checks --data-dir data
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.common import publish


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()

    import torch

    from spamtune.weights import count_parameters, load_backbone

    t0 = time.perf_counter()
    bb = load_backbone(a.model)
    t_load = time.perf_counter() - t0

    from spamtune.data import read_split
    from spamtune.inference.generate import generate_text_simple, zero_shot
    from spamtune.tokenizers import load_tokenizer

    tok = load_tokenizer(bb.tokenizer)
    prompt = "The capital of France is"
    out = generate_text_simple(bb.model, torch.tensor([tok.encode(prompt)]), 12, bb.cfg.context_length, tok.eos_id)
    text = tok.decode(out[0].tolist()).replace("\n", "\\n")
    df = read_split(Path(a.data_dir) / "test.csv")
    t0 = time.perf_counter()
    zs = zero_shot(bb.model, tok, list(df["Text"]), list(df["Label"]), bb.cfg.context_length)
    t_zs = time.perf_counter() - t0
    body = "\n".join([
        f"- load ({a.model}, GGUF read and dequantised to fp32, model built): **{t_load:.1f} s**; "
        f"{count_parameters(bb.model):,} parameters",
        f"- greedy generation: `{text}`",
        f"- zero-shot ({'chat template' if zs.chat else 'plain prompt'}, P(yes) vs P(no) at the answer token) on "
        f"the {zs.n}-message test split: **{zs.accuracy:.2%}** accuracy, called spam {zs.predicted_spam}/{zs.n} "
        f"({t_zs:.0f} s)",
    ])
    publish(f"Model checks: {a.model}", body, not a.no_record)


if __name__ == "__main__":
    main()
