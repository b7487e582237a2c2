"""`spamtune serve`: the HTTP API (POST /classify) and a web page."""

from __future__ import annotations

import argparse
import textwrap

from spamtune.cli.args import add_inference_args

EPILOG = """\
examples:
  spamtune serve runs/smollm2                 # http://127.0.0.1:8000/ and /docs
  spamtune serve runs/smollm2 --threshold 0.9 --review-threshold 0.5
  curl -s localhost:8000/classify -H 'Content-Type: application/json' \\
       -d '{"texts": ["URGENT! You have won a 1 week FREE membership in our £100,000 Prize Jackpot!"]}'
  curl -s localhost:8000/predict -H 'Content-Type: application/json' -d '{"inputs": "See you at 6?"}'
"""


def add_parser(sub) -> None:
    p = sub.add_parser("serve", formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="HTTP API (POST /classify) and a web page", epilog=textwrap.dedent(EPILOG))
    p.add_argument("run", help="run directory written by `spamtune train`")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-texts", type=int, default=64, help="texts per request (default: 64)")
    p.add_argument("--max-chars", type=int, default=20_000, help="characters per text (default: 20000)")
    p.add_argument("--threshold", type=float, help="the server's block threshold on P(spam) (default: the run's "
                                                   "stored operating point); requests may override it")
    p.add_argument("--review-threshold", type=float, help="the server's review threshold (default: the run's)")
    add_inference_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from spamtune.errors import ConfigError
    from spamtune.inference import check_threshold
    from spamtune.serving import ServeLimits, serve

    # every check before the model loads
    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 1 and 65535, not {args.port}")
    if args.max_texts < 1 or args.max_chars < 1:
        raise ConfigError("--max-texts and --max-chars must be at least 1")
    check_threshold(args.threshold, args.review_threshold)
    serve(args.run, args.host, args.port, ServeLimits(max_texts=args.max_texts, max_chars=args.max_chars),
          args.dtype, args.quantize, args.threshold, args.review_threshold)
