"""`spamtune generate` and `spamtune zero-shot`: the book's sanity checks of the pretrained weights."""

from __future__ import annotations

import argparse

from spamtune.cli.args import add_device_arg
from spamtune.config import DEFAULT_MODEL
from spamtune.errors import ConfigError


def add_parser(sub) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("generate", formatter_class=fmt, help="greedy text generation (a sanity check of the weights)",
                       epilog='example:\n  spamtune generate --model smollm2-135m "The capital of France is"')
    p.add_argument("prompt")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"preset or path (default: {DEFAULT_MODEL})")
    add_device_arg(p)
    p.add_argument("--max-new-tokens", type=int, default=20)
    p.set_defaults(func=run_generate)

    p = sub.add_parser("zero-shot", formatter_class=fmt, help="ask the untuned model 'is this spam?' (baseline)",
                       epilog="example:\n  spamtune zero-shot --data-dir data/ --model smollm2-135m")
    p.add_argument("--data-dir", default="data", help="directory written by `spamtune prepare` (default: data)")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"preset or path (default: {DEFAULT_MODEL})")
    add_device_arg(p)
    p.add_argument("--split", default="test", choices=("train", "validation", "test"))
    p.add_argument("--limit", type=int, help="first N messages only")
    p.set_defaults(func=run_zero_shot)


def run_generate(args: argparse.Namespace) -> None:
    import torch

    from spamtune.devices import resolve_device
    from spamtune.inference.generate import generate_text_simple
    from spamtune.tokenizers import load_tokenizer
    from spamtune.weights import load_backbone

    device = resolve_device(args.device)
    bb = load_backbone(args.model)
    tok = load_tokenizer(bb.tokenizer)
    ids = tok.encode(args.prompt)
    if not ids:
        raise ConfigError("the prompt encodes to no tokens")
    out = generate_text_simple(bb.model.to(device), torch.tensor([ids], device=device), args.max_new_tokens,
                               bb.cfg.context_length, tok.eos_id)
    print(tok.decode(out[0].tolist()))


def run_zero_shot(args: argparse.Namespace) -> None:
    from pathlib import Path

    from spamtune.data import read_split
    from spamtune.devices import resolve_device
    from spamtune.inference.generate import zero_shot
    from spamtune.tokenizers import load_tokenizer
    from spamtune.weights import load_backbone

    df = read_split(Path(args.data_dir) / f"{args.split}.csv")
    if args.limit:
        df = df[: args.limit]
    device = resolve_device(args.device)
    bb = load_backbone(args.model)
    r = zero_shot(bb.model.to(device), load_tokenizer(bb.tokenizer), list(df["Text"]), list(df["Label"]),
                  bb.cfg.context_length)
    print(f"zero-shot {args.model} on {args.split} ({r.n} messages, {'chat' if r.chat else 'plain'} prompt): "
          f"accuracy {r.accuracy:.2%}, called spam {r.predicted_spam}/{r.n}")
