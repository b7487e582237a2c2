"""`spamtune serve`: the HTTP API, the web page and the admin page, recording every decision."""

from __future__ import annotations

import argparse
import os
import textwrap

from spamtune.cli.args import add_inference_args
from spamtune.config import CANARY_SHARE, REGISTRY_POLL_S, ServeLimits

EPILOG = """\
examples:
  spamtune serve runs/smollm2                 # http://127.0.0.1:8000/, /docs, /admin, /metrics
  spamtune serve runs/smollm2 --db postgresql+psycopg://spamtune@db.internal/spamtune --api-key "$KEY"
  spamtune serve runs/smollm2 --threshold 0.9 --review-threshold 0.5 --no-store-text
  curl -s localhost:8000/classify -H 'Content-Type: application/json' \\
       -d '{"texts": ["URGENT! You have won a 1 week FREE membership in our £100,000 Prize Jackpot!"]}'
  curl -s localhost:8000/predict -H 'Content-Type: application/json' -d '{"inputs": "See you at 6?"}'
  curl -s localhost:8000/feedback -H 'Content-Type: application/json' \\
       -d '{"id": "<the id of a result>", "token": "<its feedback_token>", "label": "ham"}'
  spamtune serve --registry /srv/spamtune/registry          # answers with current; follows promote / rollback
  spamtune serve --registry REG --shadow 5                  # version 5 scores every request too, unseen
  spamtune serve --registry REG --canary 5 --canary-share 0.1   # version 5 answers 10 % of requests

With --registry the service answers with the registry's current version and, when a promote or rollback
changes it, loads the new version in the background and swaps it in between two forward passes: no request is
dropped, and every answer (and its record) carries the run_id of the one version that made it.

Keys: --api-key is the admin key (reads stored messages: /admin/api/*, the corrections CSV); --feedback-key
lets an app post /feedback only; and each answer's feedback_token lets whoever received that decision correct it
without a key (the page's "Wrong?"). Feedback is rate-limited per client and per credential. A server bound to
127.0.0.1 answers only to loopback Host names (no DNS rebinding); behind a proxy, name yours with --allowed-host.

The store's operator lists (`spamtune lists`, /admin) decide listed messages first, in every process serving
that store; say who sent a request's messages with "sender" in /classify.

Every decision is recorded in the prediction store: by default a SQLite file in $XDG_DATA_HOME/spamtune
(~/.local/share/spamtune/predictions.sqlite); --db takes any SQLAlchemy URL, e.g. PostgreSQL. Writes happen in
the background: a store that is down costs records ("not recorded" in /metrics and the log), never answers.
"""


def add_parser(sub) -> None:
    limits = ServeLimits()  # the flags' defaults
    p = sub.add_parser("serve", formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="HTTP API, web page and admin page, recording decisions", epilog=textwrap.dedent(EPILOG))
    p.add_argument("run", nargs="?", help="run directory written by `spamtune train` (or give --registry)")
    p.add_argument("--registry", default=os.environ.get("SPAMTUNE_REGISTRY"),
                   help="serve the registry's current version and follow it (default: $SPAMTUNE_REGISTRY)")
    p.add_argument("--poll", type=float, default=REGISTRY_POLL_S,
                   help=f"seconds between reads of the registry's pointer (default: {REGISTRY_POLL_S})")
    p.add_argument("--shadow", metavar="RUN_OR_VERSION",
                   help="a second model that scores every request too; recorded, never returned")
    p.add_argument("--canary", metavar="RUN_OR_VERSION", help="a second model that answers --canary-share of "
                                                              "the requests")
    p.add_argument("--canary-share", type=float, default=CANARY_SHARE,
                   help=f"share of requests the canary answers (default: {CANARY_SHARE})")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=os.environ.get("SPAMTUNE_PORT") or "8000",
                   help="port to listen on (default: $SPAMTUNE_PORT, else 8000)")
    p.add_argument("--max-texts", type=int, default=limits.max_texts,
                   help=f"texts per request (default: {limits.max_texts})")
    p.add_argument("--max-chars", type=int, default=limits.max_chars,
                   help=f"characters per text (default: {limits.max_chars})")
    p.add_argument("--max-queue", type=int, default=limits.max_queue,
                   help=f"texts allowed to wait for the model; beyond, 503 with Retry-After (default: "
                        f"{limits.max_queue})")
    p.add_argument("--timeout", type=float, default=limits.request_timeout_s,
                   help=f"seconds a request may wait (default: {limits.request_timeout_s:g})")
    p.add_argument("--threshold", type=float, help="the server's block threshold on P(spam) (default: the run's "
                                                   "stored operating point); requests may override it")
    p.add_argument("--review-threshold", type=float, help="the server's review threshold (default: the run's)")
    p.add_argument("--db", help="prediction store URL (default: sqlite in $XDG_DATA_HOME/spamtune)")
    p.add_argument("--no-store", action="store_true", help="record nothing")
    p.add_argument("--no-store-text", action="store_true", help="keep only each message's sha256, not its text")
    p.add_argument("--api-key", default=os.environ.get("SPAMTUNE_API_KEY") or None,
                   help="the admin key: /admin/api/* and the corrections CSV (default: $SPAMTUNE_API_KEY)")
    p.add_argument("--feedback-key", default=os.environ.get("SPAMTUNE_FEEDBACK_KEY") or None,
                   help="a key that may post /feedback only (default: $SPAMTUNE_FEEDBACK_KEY)")
    p.add_argument("--feedback-secret", default=os.environ.get("SPAMTUNE_FEEDBACK_SECRET") or None,
                   help="signs each answer's feedback_token; give every server process the same one (default: "
                        "$SPAMTUNE_FEEDBACK_SECRET, else derived from --api-key, else random per process)")
    p.add_argument("--feedback-rate", type=float, default=limits.feedback_per_minute_client,
                   help="corrections per minute per client address (per credential: 4x; default: "
                        f"{limits.feedback_per_minute_client:g})")
    p.add_argument("--api-key-all", action="store_true", help="require a key (admin or feedback) on every route "
                                                              "but /health")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="a Host name this server answers to (repeatable; default: loopback names when bound to a "
                        "loopback address, any otherwise)")
    p.add_argument("--no-access-log", action="store_true", help="no JSON access-log line per request")
    add_inference_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from spamtune.errors import ConfigError
    from spamtune.inference import check_threshold
    from spamtune.inference.cache import CacheConfig
    from spamtune.serving import ModelSource, ServeLimits, ServeOptions, serve
    from spamtune.serving.access import allowed_hosts_for

    # every check before the model loads
    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 1 and 65535, not {args.port}")
    if args.max_texts < 1 or args.max_chars < 1 or args.max_queue < args.max_texts or args.timeout <= 0:
        raise ConfigError("--max-texts and --max-chars must be at least 1, --max-queue at least --max-texts, and "
                          "--timeout positive")
    if args.api_key_all and not (args.api_key or args.feedback_key):
        raise ConfigError("--api-key-all needs --api-key (or $SPAMTUNE_API_KEY)")
    for name, key in (("--api-key", args.api_key), ("--feedback-key", args.feedback_key),
                      ("--feedback-secret", args.feedback_secret)):
        if key is not None and len(key) < 16:
            raise ConfigError(f"{name} must be at least 16 characters")
    if args.feedback_key is not None and args.feedback_key == args.api_key:
        raise ConfigError("--feedback-key must differ from --api-key (the feedback key reads nothing)")
    if args.feedback_rate <= 0:
        raise ConfigError("--feedback-rate must be positive")
    check_threshold(args.threshold, args.review_threshold)
    if (args.run is None) == (args.registry is None):
        raise ConfigError("give a run directory or --registry (not both)")
    if not 0 < args.canary_share < 1 or args.poll <= 0:
        raise ConfigError("--canary-share must be between 0 and 1, and --poll positive")
    source = ModelSource(run=args.run, registry=args.registry, shadow=args.shadow, canary=args.canary,
                         canary_share=args.canary_share, poll_s=args.poll, dtype=args.dtype, quantize=args.quantize,
                         device=args.device, runtime=args.runtime, cascade=not args.no_cascade)
    source.primary_dir()  # a registry without a current version fails here, before the store is opened
    store = None
    if not args.no_store:
        from spamtune.monitoring.store import PredictionStore

        store = PredictionStore.open(args.db)
    options = ServeOptions(threshold=args.threshold, review_threshold=args.review_threshold, store=store,
                           store_text=not args.no_store_text, api_key=args.api_key, feedback_key=args.feedback_key,
                           feedback_secret=args.feedback_secret, api_key_all=args.api_key_all,
                           access_log=not args.no_access_log,
                           allowed_hosts=allowed_hosts_for(args.host, args.allowed_host),
                           decision_cache=CacheConfig(args.decision_cache, args.decision_cache_ttl))
    limits = ServeLimits(max_texts=args.max_texts, max_chars=args.max_chars, max_queue=args.max_queue,
                         request_timeout_s=args.timeout, feedback_per_minute_client=args.feedback_rate,
                         feedback_per_minute_key=4 * args.feedback_rate)
    serve(source, args.host, args.port, limits, options)
