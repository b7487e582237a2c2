"""Operator lists in the prediction store's database: what `spamtune lists`, `/admin` and `/admin/api/lists` change
and every serving process reads (inference/lists.py matches them).

    lists = OperatorLists(PredictionStore.open(url))
    lists.add([entry("deny", "domain", "paypa1-fees.com", "parcel-fee wave")], by="alice")
    lists.remove([3], by="alice"); lists.entries(); lists.revision()

Every change is one transaction; a batch (an import) is added whole or not at all. `revision()` is one cheap
aggregate that changes with every add and every removal: serving processes poll it (ListCheck) and re-read the
entries only when it moved.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from spamtune.errors import DataError, SpamtuneError
from spamtune.inference.files import FORMULA_PREFIXES
from spamtune.inference.lists import ListCheck, ListEntry, entry
from spamtune.monitoring.schema import ACTIVE_ENTRY, list_entries
from spamtune.monitoring.store import PredictionStore, StoreError, _reason, _utc, now

if TYPE_CHECKING:
    from spamtune.inference import TextClassifier

CSV_COLUMNS = ("action", "kind", "value", "reason", "created_by", "created_at")


class ListConflict(SpamtuneError):
    """The entry is already on the lists (or, for a removal, no active entry has that id)."""


class OperatorLists:
    """The `list_entries` table of a store (see the module docstring); a `ListSource` for `ListCheck`."""

    def __init__(self, store: PredictionStore) -> None:
        self.store = store

    def revision(self) -> tuple[int, int]:
        """(highest id, entries removed so far): both only grow, and every change moves one of them."""
        c = list_entries.c
        with self.store.engine.connect() as conn:
            top, removed = conn.execute(select(func.max(c.id), func.count(c.removed_at))).one()
        return int(top or 0), int(removed)

    def entries(self, include_removed: bool = False) -> list[ListEntry]:
        """The active entries (with the removed ones too, for the history), oldest first."""
        q = select(list_entries).order_by(list_entries.c.id)
        if not include_removed:
            q = q.where(ACTIVE_ENTRY)
        with self.store.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(q)]
        return [ListEntry(**{**r, "created_at": _utc(r["created_at"]), "removed_at": _utc(r["removed_at"])})
                for r in rows]

    def add(self, new: Sequence[ListEntry], by: str, skip_existing: bool = False) -> tuple[list[ListEntry], int]:
        """Add entries (made with `inference.lists.entry`: normalised and checked) as `by`, all or none. An entry
        already active is a `ListConflict`, or skipped with `skip_existing` (an import run twice). Returns the
        entries added (with their ids) and how many were skipped."""
        by = check_who(by)
        self.store.check_file()
        seen: dict[tuple[str, str, str], int] = {}
        for i, e in enumerate(new, start=1):
            key = (e.action, e.kind, e.value)
            if key in seen and not skip_existing:
                raise ListConflict(f"entry {i} repeats entry {seen[key]} ({e.action} {e.kind} {e.value!r})")
            seen.setdefault(key, i)
        unique = [e for i, e in enumerate(new, start=1) if seen[(e.action, e.kind, e.value)] == i]
        added: list[ListEntry] = []
        c = list_entries.c
        try:
            with self.store.engine.begin() as conn:
                active = {(r.action, r.kind, r.value): r.id for r in conn.execute(
                    select(c.id, c.action, c.kind, c.value).where(ACTIVE_ENTRY))}
                for e in unique:
                    if (e.action, e.kind, e.value) in active:
                        if skip_existing:
                            continue
                        raise ListConflict(f"{e.action} {e.kind} {e.value!r} is on the lists already (entry "
                                           f"#{active[(e.action, e.kind, e.value)]})")
                    t = now()
                    values = dict(action=e.action, kind=e.kind, value=e.value, reason=e.reason, created_by=by,
                                  created_at=t)
                    pk = conn.execute(list_entries.insert().values(**values)).inserted_primary_key
                    assert pk is not None
                    added.append(ListEntry(**values, id=int(pk[0])))  # type: ignore[arg-type]
        except IntegrityError:  # another process added the same entry at the same moment
            raise ListConflict("an entry was added by someone else at the same time; run it again") from None
        except SQLAlchemyError as e:
            raise StoreError(f"cannot write to the prediction store {self.store.url}: {_reason(e)}") from None
        return added, len(new) - len(added)

    def remove(self, ids: Sequence[int], by: str) -> list[ListEntry]:
        """Retire active entries by id (kept in the history with who and when), all or none."""
        by = check_who(by)
        self.store.check_file()
        c = list_entries.c
        try:
            with self.store.engine.begin() as conn:
                rows = {r.id: r for r in conn.execute(select(list_entries).where(c.id.in_(list(ids)), ACTIVE_ENTRY))}
                missing = [i for i in ids if i not in rows]
                if missing:
                    raise ListConflict(f"no active list entry has the id {missing[0]} (see `spamtune lists list`)")
                t = now()
                conn.execute(update(list_entries).where(c.id.in_(list(ids)), ACTIVE_ENTRY)
                             .values(removed_at=t, removed_by=by))
        except SQLAlchemyError as e:
            raise StoreError(f"cannot write to the prediction store {self.store.url}: {_reason(e)}") from None
        return [ListEntry(**{**dict(rows[i]._mapping), "created_at": _utc(rows[i].created_at), "removed_at": t,
                             "removed_by": by}) for i in ids]


WHO = r"^[^\x00-\x1f\x7f-\x9f]{1,64}$"  # who made a change: 1 to 64 characters, no control characters


def list_check(store: PredictionStore, clf: TextClassifier) -> ListCheck | None:
    """The store's lists as the first check for `clf`'s kind of run (`serve`, `classify --db`): runs that decide
    between two labels; None for the others."""
    if not clf.binary or clf.pipeline is None:
        return None
    return ListCheck(OperatorLists(store), clf.label_names)


def check_who(by: str) -> str:
    if not isinstance(by, str) or not re.fullmatch(WHO, by):
        raise DataError(f"who made the change: {by!r} is not a name (1 to 64 characters, no control characters)")
    return by


def _cell(value: str) -> str:
    """An exported cell: a leading ' before what a spreadsheet would run as a formula (and before a leading ', so
    that `_uncell` gives every value back exactly: "+44..." senders and "=" patterns round-trip)."""
    return "'" + value if value.startswith((*FORMULA_PREFIXES, "'")) else value


def _uncell(value: str) -> str:
    return value[1:] if value.startswith("'") else value


def read_csv(text: str, where: str) -> list[ListEntry]:
    """Entries from CSV with a header (action, kind, value; reason optional), every row checked before any is used:
    the first bad row is one error naming its line. An export of `write_csv` (it has a created_by column) is read
    back exactly."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [col for col in ("action", "kind", "value") if col not in (reader.fieldnames or [])]
    if missing:
        raise DataError(f"{where}: no column {missing[0]!r} (a header line with action,kind,value[,reason] first)")
    cell = _uncell if "created_by" in (reader.fieldnames or []) else str
    out = []
    try:
        for row in reader:
            if row.get(None):  # type: ignore[call-overload]
                raise DataError(f"{where}, line {reader.line_num}: more fields than the header has (a value with a "
                                "comma must be in double quotes)")
            try:
                out.append(entry((row["action"] or "").strip(), (row["kind"] or "").strip(), cell(row["value"] or ""),
                                 cell(row.get("reason") or "")))
            except DataError as e:
                raise DataError(f"{where}, line {reader.line_num}: {e}") from None
    except csv.Error as e:
        raise DataError(f"{where}, line {reader.line_num}: not CSV ({e})") from None
    if not out:
        raise DataError(f"{where}: no entries")
    return out


def write_csv(entries: Iterable[ListEntry], f: Any) -> int:
    """The entries as CSV (what `read_csv` reads back exactly); no cell runs as a formula in a spreadsheet."""
    w = csv.writer(f)
    w.writerow(CSV_COLUMNS)
    n = 0
    for e in entries:
        w.writerow([e.action, e.kind, _cell(e.value), _cell(e.reason), _cell(e.created_by),
                    e.created_at.isoformat() if e.created_at else ""])
        n += 1
    return n
