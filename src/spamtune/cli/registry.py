"""`spamtune registry`: numbered versions of runs, and which one is current (promote, rollback)."""

from __future__ import annotations

import argparse
import os
import textwrap

EPILOG = """\
examples:
  spamtune registry add runs/smollm2 --registry /srv/spamtune/registry --note "first model"
  spamtune registry promote 1 --registry REG        # the first promotion needs no comparison
  spamtune registry list --registry REG
  spamtune registry promote 2 --registry REG        # needs `spamtune compare --registry REG 2` to say promote
  spamtune registry promote 2 --registry REG --force --reason "hotfix for the new scam wave"   # recorded
  spamtune registry rollback --registry REG         # back to the version promoted before

`spamtune serve --registry REG` answers with the current version and swaps in a new one without dropping a
request. $SPAMTUNE_REGISTRY sets the default registry.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("registry", formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="model versions: add, list, promote, rollback", epilog=textwrap.dedent(EPILOG))
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (("list", "versions, the current one, and the log"), ("add", "a finished run as a new version"),
                       ("promote", "make a version current"), ("rollback", "back to the version promoted before")):
        a = actions.add_parser(name, help=text, formatter_class=argparse.RawDescriptionHelpFormatter,
                               epilog=textwrap.dedent(EPILOG))
        a.add_argument("--registry", default=os.environ.get("SPAMTUNE_REGISTRY"),
                       help="the registry directory (default: $SPAMTUNE_REGISTRY)")
        if name == "add":
            a.add_argument("run", help="a finished run directory (copied in)")
            a.add_argument("--note", default="", help="a line kept with the version")
        if name == "promote":
            a.add_argument("version", help="the version number")
            a.add_argument("--force", action="store_true", help="without a passing comparison (recorded)")
        if name in ("promote", "rollback"):
            a.add_argument("--reason", default="", help="why, for the log")
        if name == "list":
            a.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    import json

    from spamtune.errors import ConfigError
    from spamtune.lifecycle import Registry, parse_version

    if not args.registry:
        raise ConfigError("give the registry with --registry (or $SPAMTUNE_REGISTRY)")
    reg = Registry(args.registry)
    if args.action == "add":
        v = reg.add(args.run, note=args.note)
        print(f"added {args.run} as version {v.number} ({v.run_id}); promote it with: spamtune registry promote "
              f"{v.number} --registry {reg.root}")
    elif args.action == "promote":
        e = reg.promote(parse_version(args.version), force=args.force, reason=args.reason)
        print(f"version {e['version']} ({e['run_id']}) is current" + (" (forced)" if e["forced"] else "")
              + (f"; was version {e['from']}" if e["from"] else ""))
    elif args.action == "rollback":
        e = reg.rollback(reason=args.reason)
        print(f"rolled back: version {e['version']} ({e['run_id']}) is current; was version {e['from']}")
    else:
        current = reg.current()
        versions = reg.versions()
        if args.json:
            print(json.dumps({"current": current, "versions": [
                {"version": v.number, "run_id": v.run_id, "added": v.added, "note": v.note, "parent": v.parent,
                 "comparison": v.comparison} for v in versions], "log": reg.log()}))
            return
        if not versions:
            print(f"{reg.root}: no versions yet (spamtune registry add RUN --registry {reg.root})")
            return
        print(f"{'':2}{'version':>7}  {'run_id':<24} {'added':<26} {'compared':<10} note")
        for v in versions:
            c = v.comparison
            verdict = "-" if c is None else c["decision"] + (" (forced)" if c.get("forced") else "")
            print(f"{'*' if v.number == current else ' ':2}{v.number:>7}  {v.run_id:<24} {v.added:<26} "
                  f"{verdict:<10} {v.note}")
        for e in reg.log()[-5:]:
            extra = " (forced)" if e.get("forced") else ""
            print(f"  {e['at']}  {e['action']} {e['version']}{extra} {e.get('reason') or ''}".rstrip())
