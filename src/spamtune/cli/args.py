"""Helpers shared by the verbs: flags derived from a config dataclass's typed fields, the inference precision
flags, and `printable` for anything user-controlled that reaches the terminal."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing

from spamtune.config import CorrectionPolicy, Device, PromotionPolicy, choices
from spamtune.normalize import printable  # noqa: F401  (the verbs import it from here)


def percent(p: float) -> str:
    """A probability for people: never "100.0 %" for 0.99999988 (nor "0.0 %" for 1e-7)."""
    if p > 0.999:
        return "> 99.9 %"
    if p < 0.001:
        return "< 0.1 %"
    return f"{100 * p:.1f} %"


def _scalar_type(tp: typing.Any) -> typing.Any:
    """`int | None` -> int; `float` -> float; anything else -> str."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    return tp if tp in (int, float) else str


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type) -> None:
    """One --flag per dataclass field: its type gives the flag's type (a Literal gives `choices`), its metadata
    the help text, its default the default."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        tp, text = hints[f.name], f.metadata.get("help", "")
        if tp is bool:
            if f.default:
                parser.add_argument("--no-" + f.name.replace("_", "-"), dest=f.name, action="store_false",
                                    help=f"do not {text or f.name}")
            else:
                parser.add_argument(flag, dest=f.name, action="store_true", help=text)
            continue
        help_ = text + (f" (default: {f.default})" if f.default not in (None, False) else "")
        allowed = choices(tp)
        parser.add_argument(flag, dest=f.name, default=f.default, help=help_,
                            **({"choices": allowed} if allowed else {"type": _scalar_type(tp)}))


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", choices=choices(Device),
                        help="where the model runs: auto (CUDA if present), cpu, cuda or mps (default: auto)")


def add_runtime_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runtime", default="torch", choices=("torch", "onnx"),
                        help="torch: a run directory; onnx: a directory from `spamtune export --format onnx`, "
                             "scored by ONNX Runtime (default: torch)")


def add_dtype_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "auto"),
                        help="inference precision: bf16 is faster only where the hardware computes it (a GPU, a "
                             "CPU with AMX or AVX512-BF16), several times slower elsewhere; auto picks it only "
                             "there (default: fp32)")


def add_cascade_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-cascade", action="store_true",
                        help="a --cascade run: every message through the model, none decided by the n-gram model "
                             "alone (inference/cascade.py)")


def add_inference_args(parser: argparse.ArgumentParser) -> None:
    add_device_arg(parser)
    add_runtime_arg(parser)
    add_dtype_arg(parser)
    add_cascade_arg(parser)
    parser.add_argument("--decision-cache", type=int, default=10_000, metavar="N",
                        help="keep the decisions of the last N distinct messages: a repeat within the TTL is not "
                             "scored again; emptied by any list or memory change; 0: no cache (default: 10000)")
    parser.add_argument("--decision-cache-ttl", type=float, default=3600.0, metavar="SECONDS",
                        help="how long a cached decision stands (default: 3600)")
    parser.add_argument("--quantize", choices=("int8",),
                        help="int8: with --runtime onnx the export's ONNX Runtime int8 model; with torch, "
                             "experimental dynamic int8 of the Linear layers (below the 99.5 %% label-agreement "
                             "bar on SmolLM2; benchmarks/RESULTS.md)")


def add_promotion_args(parser: argparse.ArgumentParser, what: str = "") -> None:
    """The promotion policy's flags (`compare`, `retrain`), its defaults read from `PromotionPolicy`."""
    d = PromotionPolicy()
    parser.add_argument("--fpr-margin", type=float, default=d.fpr_margin,
                        help=f"{what}FPR may rise at most this much (absolute; default: {d.fpr_margin})")
    parser.add_argument("--recall-margin", type=float, default=d.recall_margin,
                        help=f"{what}test recall may fall this much (default: {d.recall_margin})")
    parser.add_argument("--max-recall-drop", type=float, default=d.max_recall_drop,
                        help=f"{what}guard: never promote when test recall falls more than this (default: "
                             f"{d.max_recall_drop})")
    parser.add_argument("--alpha", type=float, default=d.alpha,
                        help=f"{what}McNemar p-value for significantly better (default: {d.alpha})")


def add_correction_args(parser: argparse.ArgumentParser) -> None:
    """What a retrain learns from the store (`retrain`), its defaults read from `CorrectionPolicy`."""
    d = CorrectionPolicy()
    parser.add_argument("--holdout", type=float, default=d.holdout,
                        help=f"share of corrected messages held out (default: {d.holdout})")
    parser.add_argument("--max-share", type=float, default=d.max_share,
                        help=f"corrections at most this share of the training rows (default: {d.max_share})")
    parser.add_argument("--boost", type=int, default=d.boost,
                        help="each learnt correction this many more times in train, as perturbed copies, so that a "
                             f"few move the model (default: {d.boost}; 0: once each)")
    parser.add_argument("--untrusted-share", type=float, default=d.untrusted_share,
                        help=f"end users' corrections at most this share of the training rows (default: "
                             f"{d.untrusted_share})")
    parser.add_argument("--confident", type=float, default=d.confident,
                        help=f"an end user's correction against a prediction this sure needs review (default: "
                             f"{d.confident})")
    parser.add_argument("--learn-unreviewed", action="store_true", help="learn the corrections that need review too")
