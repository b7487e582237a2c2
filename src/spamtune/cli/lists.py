"""`spamtune lists`: the operator's allow and deny entries (senders, domains, patterns) in the prediction store."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import textwrap

EPILOG = """\
examples:
  spamtune lists add deny domain parcel-fee-uk.com --reason "parcel-fee wave" --db sqlite:///predictions.sqlite
  spamtune lists add deny pattern 'hi (mum|dad).{0,40}new (number|phone)' --reason '"hi mum" scam'
  spamtune lists add allow sender "+44 7700 900123" --reason "the bank's alerts"
  spamtune lists list                        # id, action, kind, value, who, when, why
  spamtune lists remove 3                    # retired (kept in the history: lists list --removed)
  spamtune lists export lists.csv            # action,kind,value,reason,created_by,created_at
  spamtune lists import lists.csv            # all rows checked first; entries already there are skipped

A deny entry blocks, an allow entry lets through, before any model runs (a deny wins over an allow); either is
the decision's stated reason. `serve` and `classify --db` read the lists of their store: a change made here is
in effect in every serving process within a second or two. Domains match their subdomains; deny entries also
match look-alike domains (Cyrillic letters, 0 for o, 1 for l), allow entries never do. Patterns are RE2
(case-insensitive, linear time) searched in the message as the model reads it.
"""

VERBS = (("list", "the entries (--removed: the history too)"), ("add", "an allow or deny entry"),
         ("remove", "retire entries by id"), ("import", "entries from CSV (action,kind,value[,reason])"),
         ("export", "the entries as CSV"))


def add_parser(sub) -> None:
    p = sub.add_parser("lists", formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="allow and deny entries: senders, domains, patterns", epilog=textwrap.dedent(EPILOG))
    verbs = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in VERBS:
        a = verbs.add_parser(name, help=text, formatter_class=argparse.RawDescriptionHelpFormatter,
                             epilog=textwrap.dedent(EPILOG))
        a.add_argument("--db", help="prediction store URL (default: sqlite in $XDG_DATA_HOME/spamtune)")
        if name in ("add", "remove", "import"):
            a.add_argument("--by", default=_user(), help="who makes the change, recorded (default: your login)")
        if name == "add":
            a.add_argument("list_action", choices=("allow", "deny"), metavar="allow|deny",
                           help="deny: block what matches; allow: let it through")
            a.add_argument("kind", choices=("sender", "domain", "pattern"), metavar="sender|domain|pattern",
                           help="what the value is matched against")
            a.add_argument("value", help="a sender, a domain (or URL), or an RE2 pattern")
            a.add_argument("--reason", default="", help="why, for the record")
        if name == "remove":
            a.add_argument("ids", nargs="+", type=int, metavar="ID", help="entry ids (see `lists list`)")
        if name == "list":
            a.add_argument("--removed", action="store_true", help="retired entries too")
            a.add_argument("--json", action="store_true", help="one JSON object per entry")
        if name == "import":
            a.add_argument("file", help="CSV with a header: action,kind,value[,reason] (an export reads back)")
        if name == "export":
            a.add_argument("file", help="where to write the CSV ('-': stdout)")
            a.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(func=run)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in a container
        return "cli"


def run(args: argparse.Namespace) -> None:
    from spamtune.monitoring.lists import OperatorLists, check_who
    from spamtune.monitoring.store import PredictionStore

    if args.action == "export" and args.file != "-":  # before touching the store
        from spamtune.fsutil import check_output_file

        check_output_file(args.file, args.overwrite)
    if args.action in ("add", "remove", "import"):  # every input checked before the store is opened (or created)
        check_who(args.by)
    if args.action == "import":
        entries = _read_import(args.file)
    if args.action == "add":
        from spamtune.inference.lists import entry

        entries = [entry(args.list_action, args.kind, args.value, args.reason)]
    store = PredictionStore.open(args.db, must_exist=args.action in ("list", "remove", "export"))
    lists = OperatorLists(store)
    if args.action == "add":
        (new,), _ = lists.add(entries, args.by)
        print(f"added {new.describe()} to {store.url}")
    elif args.action == "remove":
        for e in lists.remove(args.ids, args.by):
            print(f"removed {e.describe()}")
    elif args.action == "import":
        added, skipped = lists.add(entries, args.by, skip_existing=True)
        skipped_note = f" ({skipped} already there, skipped)" if skipped else ""
        print(f"imported {len(added)} entries from {args.file} into {store.url}{skipped_note}")
    elif args.action == "export":
        _export(lists, args.file)
    else:
        _print(lists.entries(include_removed=args.removed), args.json)


def _read_import(path: str):
    from spamtune.errors import DataError
    from spamtune.fsutil import require_regular_file
    from spamtune.monitoring.lists import read_csv

    require_regular_file(path, DataError)
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            text = f.read(8 << 20)  # 8 MB: about 100,000 entries
            if f.read(1):
                raise DataError(f"{path}: larger than 8 MB; split it")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    return read_csv(text, path)


def _export(lists, path: str) -> None:
    from spamtune.fsutil import atomic_file
    from spamtune.monitoring.lists import write_csv

    entries = lists.entries()
    if path == "-":
        write_csv(entries, sys.stdout)
        return
    with atomic_file(path, newline="") as f:
        n = write_csv(entries, f)
    print(f"exported {n} entries -> {path}", file=sys.stderr)


def _print(entries, as_json: bool) -> None:
    from spamtune.cli.args import printable

    if as_json:
        for e in entries:
            print(json.dumps(e.to_json()))
        return
    if not entries:
        print("no entries (add one: spamtune lists add deny domain example.com --reason why)")
        return
    for e in entries:
        when = e.created_at.strftime("%Y-%m-%d %H:%M") if e.created_at else ""
        gone = f"  [removed {e.removed_at:%Y-%m-%d %H:%M} by {e.removed_by}]" if e.removed_at else ""
        print(printable(f"{e.id:>5}  {e.action:<5} {e.kind:<7} {e.value}  ({e.created_by}, {when}"
                        f"{': ' + e.reason if e.reason else ''}){gone}", 200))
    sys.stdout.flush()
    print(f"{len(entries)} entries", file=sys.stderr)
