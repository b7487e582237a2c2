"""How far the golden values move when only the CPU kernels change: the evidence behind the golden tier's tolerance.

    python -m benchmarks.golden_spread                 # every dispatch variant below, the real-model run included
    python -m benchmarks.golden_spread --tiny-only --no-record

Runs `tests/training/test_golden.py` once per kernel-dispatch variant (ATen's CPU capability, oneDNN's and MKL's
instruction-set caps, the thread count), each in its own process with `SPAMTUNE_GOLDEN_DUMP` set so the test writes
what it got, and prints per run and quantity the largest relative and absolute distance from the recorded values,
and across variants. The tier's tolerance (tests/training/test_golden.py) is sized from these figures with a margin.
A variant that asks for an instruction set this CPU lacks falls back to what it has (the libraries cap, never
raise), so on an AVX2 machine `avx512` is the same as `avx2`: the table says what each process really used.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import publish

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "training" / "golden_values.json"

# name -> environment: each forces one library onto another code path than the default; "threads" is set with
# torch.set_num_threads in the test process (OMP_NUM_THREADS above the core count is capped by torch)
VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    "aten-default": {"ATEN_CPU_CAPABILITY": "default"},
    "aten-avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "onednn-avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "onednn-sse41": {"ONEDNN_MAX_CPU_ISA": "SSE41"},
    "mkl-sse4_2": {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
    "mkl-avx2": {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "all-minimal": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                    "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
    "threads-1": {"threads": "1"},
    "threads-4": {"threads": "4"},
}


def quantities(run: dict) -> dict[str, np.ndarray]:
    out = {"step_losses": run["step_losses"], "probabilities": run["probabilities"]}
    out.update({f"history.{k}": v for k, v in run["history"].items()})
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def distance(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(largest |a - b| / |b|, largest |a - b|) over the finite entries."""
    ok = np.isfinite(a) & np.isfinite(b)
    diff = np.abs(a[ok] - b[ok])
    rel = diff / np.maximum(np.abs(b[ok]), 1e-30)
    return (float(rel.max()) if rel.size else 0.0), (float(diff.max()) if diff.size else 0.0)


def run_variant(env: dict[str, str], tiny_only: bool) -> tuple[dict[str, dict], str]:
    """Golden runs under `env`: name -> what it got, and the capability torch reported."""
    env = dict(env)
    threads = env.pop("threads", "0")
    setup = f"import sys, torch; {threads} and torch.set_num_threads({threads}); "
    with tempfile.TemporaryDirectory() as dump:
        full = {**os.environ, **env, "SPAMTUNE_GOLDEN_DUMP": dump}
        pytest_args = ["-q", "-p", "no:cacheprovider", str(GOLDEN.with_name("test_golden.py")),
                       *(["-k", "tiny"] if tiny_only else [])]
        # failures are expected (another kernel rounds differently): what matters is what the runs dumped
        subprocess.run([sys.executable, "-c", setup + f"import pytest; sys.exit(pytest.main({pytest_args!r}))"],
                       cwd=ROOT, env=full, stdout=subprocess.DEVNULL, check=False)
        got = {p.stem: json.loads(p.read_text()) for p in Path(dump).glob("*.json")}
        cap = subprocess.run([sys.executable, "-c", setup + "print(torch.backends.cpu.get_cpu_capability(), "
                              "torch.get_num_threads())"], env=full, capture_output=True, text=True).stdout.strip()
    return got, cap


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny-only", action="store_true", help="skip the real-model (SmolLM2) golden run")
    ap.add_argument("--variants", help=f"comma-separated subset of: {', '.join(VARIANTS)}")
    ap.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = ap.parse_args(argv)

    recorded = {name: quantities(run) for name, run in json.loads(GOLDEN.read_text())["runs"].items()}
    got: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    rows = ["| variant | torch capability, threads | run | largest relative distance from the recorded values "
            "(losses / probabilities) | largest absolute |", "|---|---|---|---|---|"]
    chosen = args.variants.split(",") if args.variants else list(VARIANTS)
    if unknown := [v for v in chosen if v not in VARIANTS]:
        ap.error(f"unknown variants: {', '.join(unknown)}")
    for variant in chosen:
        env = VARIANTS[variant]
        runs, cap = run_variant(env, args.tiny_only)
        if not runs:  # the process failed before any golden run finished: say so, never skip it silently
            rows.append(f"| {variant} | {cap} | (no run finished) | - | - |")
            print(rows[-1], flush=True)
            continue
        got[variant] = {name: quantities(run) for name, run in runs.items()}
        for name, q in sorted(got[variant].items()):
            rel = {k: distance(v, recorded[name][k]) for k, v in q.items()}
            loss_rel = max(r for k, (r, _) in rel.items() if k != "probabilities")
            rows.append(f"| {variant} | {cap} | {name} | {loss_rel:.2e} / {rel['probabilities'][0]:.2e} | "
                        f"{max(a for _, a in rel.values()):.2e} |")
        print(rows[-1], flush=True)
    # across variants: the spread this machine alone can produce, whatever was recorded
    spread = {name: max(distance(got[v][name][k], got[w][name][k])[0] for v in got for w in got
                        for k in recorded[name] if name in got[v] and name in got[w])
              for name in recorded if sum(name in g for g in got.values()) >= 2}
    worst = max(max(distance(g[name][k], recorded[name][k])[0] for k in g[name]) for g in got.values() for name in g)
    body = "\n".join(rows) + "\n\nLargest relative spread between any two variants: " + ", ".join(
        f"{name} {s:.2e}" for name, s in spread.items()) + f"\n\nLargest relative distance from the recorded values, " \
        f"any variant, any quantity: {worst:.2e}\n"
    publish("Golden values under other CPU kernels", body, record=not args.no_record)


if __name__ == "__main__":
    main()
