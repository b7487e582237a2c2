"""`spamtune cache`: the frozen-prefix caches on disk (list, clear)."""

from __future__ import annotations

import argparse
import textwrap

EPILOG = """\
examples:
  spamtune cache list                         # entries, sizes, last use; the default directory
  spamtune cache list --cache-dir /scratch/spamtune --json
  spamtune cache clear                        # remove every entry (they are rebuilt when needed)

Training stores the frozen layers' output per (base weights, depth, messages' token ids) and reuses it across
runs, seeds and experiments; `train --cache-max-gb` caps the directory. Default directory: $SPAMTUNE_CACHE_DIR,
else ~/.cache/spamtune/prefix.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("cache", formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="the frozen-prefix caches on disk: list, clear", epilog=textwrap.dedent(EPILOG))
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (("list", "stored caches"), ("clear", "remove them all")):
        a = actions.add_parser(name, help=text, formatter_class=argparse.RawDescriptionHelpFormatter,
                               epilog=textwrap.dedent(EPILOG))
        a.add_argument("--cache-dir", help="the cache directory (default: $SPAMTUNE_CACHE_DIR or "
                                           "~/.cache/spamtune/prefix)")
        if name == "list":
            a.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    import datetime
    import json
    from pathlib import Path
    from typing import Any

    from spamtune.errors import ConfigError
    from spamtune.training.prefix_cache import DiskCache, default_cache_dir

    root = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root} is not a directory")
    cache = DiskCache(root)
    if args.action == "clear":
        freed = cache.clear() if root.is_dir() else 0
        print(f"cleared {root}: {freed / 1e6:.1f} MB freed")
        return
    entries = cache.entries() if root.is_dir() else []
    rows: list[dict[str, Any]] = [
        {"key": e.path.name, "bytes": e.nbytes, "rows": e.index.get("rows"), "depth": e.index.get("depth"),
         "base": e.index.get("base"), "dtype": e.index.get("dtype"), "last_used": e.index.get("last_used"),
         "damaged": bool(e.index.get("damaged"))} for e in entries]
    if args.json:
        print(json.dumps({"cache_dir": str(root), "entries": rows, "bytes": sum(r["bytes"] for r in rows)}, indent=2))
        return
    print(f"{root}: {len(rows)} caches, {sum(r['bytes'] for r in rows) / 1e6:.1f} MB")
    for r in rows:
        used = datetime.datetime.fromtimestamp(r["last_used"] or 0).strftime("%Y-%m-%d %H:%M")
        base = str(r["base"])[:40]
        print(f"  {r['key']}  {r['bytes'] / 1e6:9.1f} MB  {r['rows'] or 0:>7} messages  depth {r['depth']}  "
              f"{r['dtype']}  used {used}  {base}{'  DAMAGED' if r['damaged'] else ''}")
