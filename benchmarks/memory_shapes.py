"""Why training memory grows on the CPU in bf16 and not in fp32: anonymous RSS over training steps of the trainable
suffix (SmolLM2's last block + final norm + head, AdamW), fed random (8, T, 576) prefix outputs, for five settings:
bf16 autocast with a varying length T (as length-bucketed batches have), bf16 with one fixed T, fp32 with a
varying T, bf16 with a varying T with oneDNN (mkldnn) switched off, and bf16 with the varying T rounded up to a
multiple of 32, as spamtune's loaders now do in bf16 on the CPU.

Each setting runs in a fresh process. Found (RESULTS.md): oneDNN's bf16 kernels keep memory per input shape, so
RSS grows with the number of distinct batch widths seen (bounded by the longest message, not by the data size);
fp32 and fixed shapes stay flat. This is what benchmarks/scale.py's bf16 rows show as growth; rounding the widths
up bounds the number of shapes (9 for T up to 288), so the growth stops early.

    python -m benchmarks.memory_shapes --steps 150
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys

from benchmarks.common import memory_mb, publish

SETTINGS = {"bf16, varying T": ("bf16", "vary", True), "bf16, fixed T = 120": ("bf16", "fixed", True),
            "fp32, varying T": ("fp32", "vary", True), "bf16, varying T, mkldnn off": ("bf16", "vary", False),
            "bf16, varying T rounded up to 32 (spamtune's fix)": ("bf16", "round", True)}


def child(dtype: str, lengths: str, mkldnn: bool, steps: int, every: int) -> list[float]:
    """RssAnon (MB) after loading and after every `every` steps."""
    import torch

    from spamtune.batching import round_width
    from spamtune.classifier import CachedSuffix, Classifier, apply_trainable
    from spamtune.devices import BF16_CPU_WIDTH_MULTIPLE
    from spamtune.weights.load import load_backbone

    torch.backends.mkldnn.enabled = mkldnn
    torch.manual_seed(0)
    clf = Classifier(load_backbone("smollm2-135m").model, 2, "last_real", "last_block", seed=123)
    module = apply_trainable(clf)
    suffix = CachedSuffix(clf)
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-4)
    rng = random.Random(0)
    out = [memory_mb()["RssAnon"]]
    for step in range(1, steps + 1):
        width = rng.randint(5, 262) if lengths != "fixed" else 120  # 262: the longest message at 4x in scale.py
        if lengths == "round":  # what spamtune's loaders do in bf16 on the CPU (devices.width_multiple)
            width = round_width(width, BF16_CPU_WIDTH_MULTIPLE)
        with torch.autocast("cpu", torch.bfloat16, enabled=dtype == "bf16"):
            logits = suffix(torch.randn(8, width, 576), torch.full((8,), width)).float()
        loss = torch.nn.functional.cross_entropy(logits, torch.zeros(8, dtype=torch.long))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % every == 0:
            out.append(memory_mb()["RssAnon"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    if a.child:
        dtype, lengths, mkldnn = SETTINGS[a.child]
        print(json.dumps(child(dtype, lengths, mkldnn, a.steps, a.every)))
        return
    marks = ["after load", *(f"step {s}" for s in range(a.every, a.steps + 1, a.every))]
    rows = ["| setting | " + " | ".join(marks) + " | growth |", "|---" * (len(marks) + 2) + "|"]
    for name in SETTINGS:
        got = subprocess.run([sys.executable, "-m", "benchmarks.memory_shapes", "--child", name, "--steps",
                              str(a.steps), "--every", str(a.every)], capture_output=True, text=True, check=True)
        mb = json.loads(got.stdout.strip().splitlines()[-1])
        rows.append(f"| {name} | " + " | ".join(f"{v:.0f}" for v in mb) + f" | {mb[-1] - mb[0]:+.0f} |")
        print(rows[-1], flush=True)
    body = "\n".join(["Anonymous RSS (MB) of one process training SmolLM2's last block + norm + head on random "
                      "(8, T, 576) inputs, T uniform in 5..262 or fixed; each setting in a fresh process.", "",
                      *rows])
    publish("Memory: bf16 on the CPU and batch shapes", body, record=not a.no_record)


if __name__ == "__main__":
    main()
