"""`spamtune monitor`: a deployment's state from its prediction store; exit 1 when an alert fires."""

from __future__ import annotations

import argparse
import textwrap

EPILOG = """\
examples:
  spamtune monitor --run runs/smollm2 --since 24h --out reports/today     # the default SQLite store
  spamtune monitor --db postgresql+psycopg://spamtune@db/spamtune --run runs/smollm2 --since 7d
  */15 * * * *  spamtune monitor --run /srv/run --since 1h --out /srv/monitor || notify-ops   # cron

Writes OUT/monitor.html (charts) and OUT/monitor.json. With --run it tests the recent messages for drift
against the run's training-time reference (scores: PSI; input: KS per feature; hidden states: MMD) and exits 1
when one alerts.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("monitor", formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="monitoring report and drift alerts from the prediction store",
                       epilog=textwrap.dedent(EPILOG))
    p.add_argument("--db", help="prediction store URL (default: sqlite in $XDG_DATA_HOME/spamtune)")
    p.add_argument("--run", help="the run that answered: its decisions only, and drift tests against it")
    p.add_argument("--since", help="only predictions since then: 24h, 7d, 30m, or a date (default: all)")
    p.add_argument("--out", default="monitor", help="report directory (default: monitor)")
    p.add_argument("--json", action="store_true", help="print the JSON summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from spamtune.fsutil import check_writable_dir
    from spamtune.monitoring.report import monitor, parse_since
    from spamtune.monitoring.store import PredictionStore

    since = parse_since(args.since)
    check_writable_dir(Path(args.out))
    result = monitor(PredictionStore.open(args.db, read_only=True), args.out, args.run, since)
    s = result.summary
    if args.json:
        print(json.dumps(s))
    else:
        print(f"{s['n']} predictions; {len(s['alerts'])} alert(s){': ' if s['alerts'] else ''}"
              f"{'; '.join(s['alerts'])}")
        for sh in s["shadow"]:
            print(f"shadow {sh['shadow_run_id']} beside {sh['run_id']}: {sh['n']} messages, same label "
                  f"{sh['label_agreement']:.1%}, {sh['disagreements']} disagreement(s)")
        print(f"report: {result.html}")
    return 1 if s["alerts"] else 0
