"""Argument helpers shared by the verbs: flags derived from a config dataclass's typed fields, the inference
precision flags, and reading messages from stdin."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing

from spamtune.config import choices
from spamtune.errors import DataError


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


def add_inference_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"),
                        help="inference precision; bf16 is the fast preset (same labels as fp32 on the test split)")
    parser.add_argument("--quantize", choices=("int8",),
                        help="experimental dynamic int8 of the Linear layers: faster, but below the 99.5 %% "
                             "label-agreement bar on SmolLM2 (benchmarks/RESULTS.md)")


def read_stdin_lines() -> list[str]:
    """One message per line from stdin's bytes, so that invalid UTF-8 is an error naming the line."""
    raw = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
    lines = []
    for i, line in enumerate(raw.splitlines(), start=1):
        try:
            lines.append(line.decode("utf-8").removeprefix("\ufeff"))
        except UnicodeDecodeError as e:
            raise DataError(f"stdin line {i}: not valid UTF-8 (byte {e.start})") from None
    return lines
