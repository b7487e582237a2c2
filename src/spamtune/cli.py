"""Command line: one function per verb, in pipeline order. Bad input exits 2 with one `spamtune: error:` line."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import textwrap
from importlib.metadata import version

from spamtune.config import DEFAULT_MODEL
from spamtune.errors import SpamtuneError

EXAMPLES = """\
examples:
  spamtune prepare --data ../shared/data/SMSSpamCollection --out data/
  spamtune train --data-dir data/ --out runs/smollm2
  spamtune evaluate runs/smollm2 --data-dir data/
  spamtune classify runs/smollm2 "You won a free cruise! Reply YES" "Are we still on for lunch?"
"""


def _add_dataclass_args(parser: argparse.ArgumentParser, cls) -> None:
    """One --flag per dataclass field; the field's metadata supplies help and choices."""
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        meta = dict(f.metadata)
        help_ = meta.get("help", "") + (f" (default: {f.default})" if f.default not in (None, False) else "")
        if f.type in ("bool", bool):
            if f.default:
                parser.add_argument("--no-" + f.name.replace("_", "-"), dest=f.name, action="store_false",
                                    help=f"do not {meta.get('help', f.name)}")
            else:
                parser.add_argument(flag, dest=f.name, action="store_true", help=meta.get("help"))
            continue
        typ = {"int": int, "float": float, "int | None": int, "float | None": float}.get(str(f.type), str)
        parser.add_argument(flag, dest=f.name, type=typ, default=f.default, choices=meta.get("choices"), help=help_)


def _add_inference_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"),
                        help="inference precision; bf16 is the fast preset (same labels as fp32 on the test split)")
    parser.add_argument("--quantize", choices=("int8",),
                        help="experimental dynamic int8 of the Linear layers: faster, but below the 99.5 %% "
                             "label-agreement bar on SmolLM2 (benchmarks/RESULTS.md)")


# ---------------------------------------------------------------------------------------------------------------
# verbs


def cmd_prepare(args: argparse.Namespace) -> None:
    from spamtune.data import prepare

    labels = tuple(args.labels.split(",")) if args.labels else None
    result = prepare(args.out, args.data, verify=not args.no_verify, seed=args.seed, balance=not args.no_balance,
                     stratify=args.stratify, train_frac=args.train_frac, validation_frac=args.val_frac,
                     test_frac=args.test_frac, text_col=args.text_col, label_col=args.label_col, labels=labels,
                     overwrite=args.overwrite)
    print(f"read {result.source}\nwrote {result.out}/\n{result.table()}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    import json

    from spamtune.evaluate import evaluate_run, format_report

    r = evaluate_run(args.run, args.data_dir, args.threshold, args.limit, unused=not args.no_unused,
                     progress=not args.json)
    print(json.dumps(r) if args.json else format_report(r))


def cmd_classify(args: argparse.Namespace) -> None:
    import json

    from spamtune.predict import SpamClassifier, check_threshold, predict_ids

    check_threshold(args.threshold)
    if args.file:
        if args.texts:
            raise SpamtuneError("give messages as arguments or with --file, not both")
        from spamtune.predict import classify_file

        clf = SpamClassifier.load(args.run, args.dtype, args.quantize)
        n = classify_file(clf, args.file, args.out, args.threshold, args.text_col)
        if args.out:
            print(f"classified {n} messages -> {args.out}", file=sys.stderr)
        return
    if args.out:
        raise SpamtuneError("--out goes with --file")
    texts = args.texts or _read_stdin_lines()
    if not texts:
        raise SpamtuneError("no messages: give them as arguments or one per line on stdin")
    clf = SpamClassifier.load(args.run, args.dtype, args.quantize)
    if clf.task != "single_label":  # multi-label: labels joined by "|"; regression: the predicted value
        for text, (label, score) in zip(texts, clf.predict(texts)):
            print(json.dumps({"label": label, "score": score, "text": text}) if args.json
                  else f"{label or '(none)':<12} {score:8.4f}  {text[:70]}")
        return
    probs = clf.predict_proba(texts)
    for text, p, pred in zip(texts, probs, predict_ids(probs, args.threshold)):
        record = {"label": clf.labels[pred], "probability": float(p[pred]),
                  "probabilities": dict(zip(clf.labels, map(float, p))), "text": text}
        if args.json:
            print(json.dumps(record))
        else:
            shown = text if len(text) <= 70 else text[:67] + "..."
            shown = shown.encode("utf-8", "replace").decode("utf-8")  # a lone surrogate cannot be printed
            # two classes: the positive class's probability (P(spam)) whatever the label; more: the label's own
            score = f"P({clf.labels[1]}) {p[1]:6.1%}" if len(clf.labels) == 2 else f"{record['probability']:6.1%}"
            print(f"{record['label']:<6} {score}  {shown}")


def cmd_export(args: argparse.Namespace) -> None:
    from spamtune.export import export_hf

    out = export_hf(args.run, args.out, overwrite=args.overwrite)
    print(f"exported {args.run} -> {out} (AutoModelForSequenceClassification.from_pretrained({str(out)!r}))")


def _read_stdin_lines() -> list[str]:
    """One message per line from stdin's bytes, so that invalid UTF-8 is an error naming the line."""
    raw = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
    lines = []
    for i, line in enumerate(raw.splitlines(), start=1):
        try:
            lines.append(line.decode("utf-8").removeprefix("\ufeff"))
        except UnicodeDecodeError as e:
            raise SpamtuneError(f"stdin line {i}: not valid UTF-8 (byte {e.start})") from None
    return lines


def cmd_serve(args: argparse.Namespace) -> None:
    from spamtune.serve import ServeLimits, serve

    serve(args.run, args.host, args.port, ServeLimits(max_texts=args.max_texts, max_chars=args.max_chars),
          args.dtype, args.quantize)


def cmd_generate(args: argparse.Namespace) -> None:
    import torch

    from spamtune.generate import generate_text_simple
    from spamtune.tokenizer import load_tokenizer
    from spamtune.weights import load_backbone

    bb = load_backbone(args.model)
    tok = load_tokenizer(bb.tokenizer)
    ids = tok.encode(args.prompt)
    if not ids:
        raise SpamtuneError("the prompt encodes to no tokens")
    out = generate_text_simple(bb.model, torch.tensor([ids]), args.max_new_tokens, bb.cfg.context_length, tok.eos_id)
    print(tok.decode(out[0].tolist()))


def cmd_zero_shot(args: argparse.Namespace) -> None:
    from pathlib import Path

    from spamtune.data import read_split
    from spamtune.generate import zero_shot
    from spamtune.tokenizer import load_tokenizer
    from spamtune.weights import load_backbone

    df = read_split(Path(args.data_dir) / f"{args.split}.csv")
    if args.limit:
        df = df[: args.limit]
    bb = load_backbone(args.model)
    r = zero_shot(bb.model, load_tokenizer(bb.tokenizer), list(df["Text"]), list(df["Label"]), bb.cfg.context_length)
    print(f"zero-shot {args.model} on {args.split} ({r.n} messages, {'chat' if r.chat else 'plain'} prompt): "
          f"accuracy {r.accuracy:.2%}, called spam {r.predicted_spam}/{r.n}")


def cmd_train(args: argparse.Namespace) -> None:
    from spamtune.config import TrainArgs
    from spamtune.train import train_run

    if args.resume:
        train_run(None, None, args.resume, resume=True)
        return
    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainArgs)}
    train_run(TrainArgs(**fields), args.data_dir, args.out, overwrite=args.overwrite)


# ---------------------------------------------------------------------------------------------------------------
# parser


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="spamtune", formatter_class=fmt, epilog=EXAMPLES,
        description="Fine-tune a pretrained decoder LLM into a text classifier (SMS spam vs ham by default).")
    parser.add_argument("--version", action="version", version=f"spamtune {version('spamtune')}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = sub.add_parser("prepare", formatter_class=fmt, help="get, balance and split the data into CSVs",
                       description="Get the SMS Spam Collection (or any CSV/TSV), balance it by undersampling, "
                                   "split 70/10/20 and write train/validation/test/unused CSVs and labels.json.",
                       epilog=textwrap.dedent("""\
                           examples:
                             spamtune prepare --data ../shared/data/SMSSpamCollection --out data/
                             spamtune prepare --out data/                  # $SPAMTUNE_DATA, cache, or download
                             spamtune prepare --data reviews.csv --text-col review --label-col sentiment --out d/
                           """))
    p.add_argument("--data", help="SMSSpamCollection file, its UCI zip, or a CSV/TSV with --text-col/--label-col "
                                  "(default: $SPAMTUNE_DATA, then the cache, then download)")
    p.add_argument("--out", default="data", help="output directory (default: data)")
    p.add_argument("--seed", type=int, default=123, help="seed for undersampling and shuffling (default: 123)")
    p.add_argument("--no-balance", action="store_true", help="keep the natural class ratio (no undersampling)")
    p.add_argument("--stratify", action="store_true", help="keep the class ratio equal across the splits")
    p.add_argument("--train-frac", type=float, default=0.7, help="default: 0.7")
    p.add_argument("--val-frac", type=float, default=0.1, help="default: 0.1")
    p.add_argument("--test-frac", type=float, default=None, help="default: the rest")
    p.add_argument("--text-col", help="text column of a CSV/TSV given with --data")
    p.add_argument("--label-col", help="label column of a CSV/TSV given with --data")
    p.add_argument("--labels", help="comma-separated allowed labels; other values are an error")
    p.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the SMS collection")
    p.add_argument("--overwrite", action="store_true", help="replace existing files in --out")
    p.set_defaults(func=cmd_prepare)

    from spamtune.config import TrainArgs

    p = sub.add_parser("train", formatter_class=fmt, help="fine-tune a classifier (book ch. 6 defaults)",
                       description="Fine-tune a pretrained decoder as a classifier: swap the vocabulary head for a "
                                   "class head, train the chosen scope with AdamW, keep the best epoch by "
                                   "validation loss. Frozen layers run once per message (exact, much faster).",
                       epilog=textwrap.dedent("""\
                           examples:
                             spamtune train --data-dir data/ --out runs/smollm2
                             spamtune train --data-dir data/ --out runs/lora --trainable lora --lora-rank 8
                             spamtune train --data-dir data/ --out runs/g2 --model gpt2-small --padding longest_train
                             spamtune train --data-dir data/ --out runs/t --lr-schedule cosine --warmup-ratio 0.1 \\
                                 --class-weights 2,1                        # a wrong ham costs twice in the loss
                             spamtune train --resume runs/smollm2          # continue a killed run
                             spamtune train --data-dir data/ --out runs/hf --backend hf --model all-minilm-l6-v2 \\
                                 --trainable all                            # transformers' AutoModel...
                           """))
    p.add_argument("--data-dir", default="data", help="directory written by `spamtune prepare` (default: data)")
    p.add_argument("--out", default="runs/latest", help="run directory to create (default: runs/latest)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last finished epoch")
    _add_dataclass_args(p, TrainArgs)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", formatter_class=fmt, help="accuracy, precision/recall/F1, confusion matrix, FPR",
                       epilog=textwrap.dedent("""\
                           examples:
                             spamtune evaluate runs/smollm2 --data-dir data/
                             spamtune evaluate runs/smollm2 --data-dir data/ --json --threshold 0.8
                           """))
    p.add_argument("run", help="run directory written by `spamtune train`")
    p.add_argument("--data-dir", default="data", help="directory written by `spamtune prepare` (default: data)")
    p.add_argument("--threshold", type=float, help="spam if P(spam) >= this (two classes; default: argmax)")
    p.add_argument("--limit", type=int, help="first N messages of each split only")
    p.add_argument("--no-unused", action="store_true", help="skip the false-positive rate on unused.csv")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("classify", formatter_class=fmt, help="label new messages with a probability",
                       epilog=textwrap.dedent("""\
                           examples:
                             spamtune classify runs/smollm2 "WINNER! Claim your prize now" "See you at 6?"
                             cat messages.txt | spamtune classify runs/smollm2 --json
                             spamtune classify runs/smollm2 --file inbox.csv --text-col body --out scored.csv
                           """))
    p.add_argument("run", help="run directory written by `spamtune train`")
    p.add_argument("texts", nargs="*", help="messages (default: one per line on stdin)")
    p.add_argument("--threshold", type=float, help="spam if P(spam) >= this (two classes; default: argmax)")
    p.add_argument("--json", action="store_true", help="one JSON object per message")
    p.add_argument("--file", help="classify a .txt (one message per line) or .csv/.tsv file, streamed in batches")
    p.add_argument("--text-col", default="Text", help="text column of a --file CSV (default: Text)")
    p.add_argument("--out", help="with --file: write .jsonl or .csv here (default: JSON lines on stdout)")
    _add_inference_args(p)
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("serve", formatter_class=fmt, help="HTTP API (POST /classify) and a web page",
                       epilog=textwrap.dedent("""\
                           examples:
                             spamtune serve runs/smollm2                 # http://127.0.0.1:8000/ and /docs
                             curl -s localhost:8000/classify -H 'Content-Type: application/json' \\
                                  -d '{"texts": ["WINNER! Claim your prize", "See you at 6?"]}'
                           """))
    p.add_argument("run", help="run directory written by `spamtune train`")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-texts", type=int, default=64, help="texts per request (default: 64)")
    p.add_argument("--max-chars", type=int, default=20_000, help="characters per text (default: 20000)")
    _add_inference_args(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("export", formatter_class=fmt, help="write a run as a transformers model directory",
                       description="Write a run as a directory that AutoModelForSequenceClassification."
                                   "from_pretrained loads, with the same probabilities (last_real-pooled runs).",
                       epilog=textwrap.dedent("""\
                           examples:
                             spamtune export runs/smollm2 --format hf --out exported/smollm2-spam
                             python -c "from transformers import pipeline; \\
                               print(pipeline('text-classification', 'exported/smollm2-spam')('WINNER!'))"
                           """))
    p.add_argument("run", help="run directory written by `spamtune train`")
    p.add_argument("--format", default="hf", choices=("hf",), help="hf: a transformers model directory")
    p.add_argument("--out", required=True, help="directory to write (atomic)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("generate", formatter_class=fmt, help="greedy text generation (a sanity check of the weights)",
                       epilog='example:\n  spamtune generate --model smollm2-135m "The capital of France is"')
    p.add_argument("prompt")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"preset or path (default: {DEFAULT_MODEL})")
    p.add_argument("--max-new-tokens", type=int, default=20)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("zero-shot", formatter_class=fmt, help="ask the untuned model 'is this spam?' (baseline)",
                       epilog="example:\n  spamtune zero-shot --data-dir data/ --model smollm2-135m")
    p.add_argument("--data-dir", default="data", help="directory written by `spamtune prepare` (default: data)")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"preset or path (default: {DEFAULT_MODEL})")
    p.add_argument("--split", default="test", choices=("train", "validation", "test"))
    p.add_argument("--limit", type=int, help="first N messages only")
    p.set_defaults(func=cmd_zero_shot)

    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `classify RUN --json "a" "b"`: argparse closes a nargs="*" positional at the first option; the words after
    # it are still messages (parse_intermixed_args does not support subcommands)
    if extra and args.verb == "classify" and not any(e.startswith("-") for e in extra):
        args.texts += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except SpamtuneError as e:
        print(f"spamtune: error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # config validation (dataclass __post_init__) speaks in flag names
        print(f"spamtune: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("spamtune: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
