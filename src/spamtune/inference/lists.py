"""Operator lists: allow and deny entries for senders, for URL domains in a message, and for patterns — the first
check of the decision pipeline (Rspamd's multimaps, SpamAssassin's whitelist_from / blacklist_from, tg-spam's
approved users and stop words). A listed message is decided by its entry, which is the decision's stated reason;
the model never sees it.

    lists = CompiledLists(entries)                      # entries from the store (monitoring/lists.py)
    lists.match("Pay the fee at pаypal-fees.com", sender="+44 7700 900123")   # the entries that apply

Matching rules (one place for each):
- senders: case-folded; a phone number compares by its digits and a leading "+" ("+44 (7700) 900-123" is
  "+447700900123"); anything else (an e-mail address, a name) compares whole.
- domains: every host in the message (with or without a scheme; IDNA's dots; punycode decoded) is lower-cased and
  NFKC-normalised; an entry matches the host and its subdomains ("evil.com" matches "login.evil.com", not
  "notevil.com"). A *deny* entry also matches look-alikes (Cyrillic/Greek letters that look Latin, "0"/"1" for
  "o"/"l": "pаypa1.com" is "paypal.com"); an *allow* entry never does — a look-alike of an allowed domain is what a
  phisher registers.
- patterns: RE2 (linear time, no backtracking blow-up), case-insensitive, searched in the message as the model
  reads it (NFKC, invisible characters removed, look-alike letters folded). A pattern RE2 cannot compile within
  its memory bound is refused when it is added, with RE2's reason.
- a deny entry wins over an allow entry (an allowed sender whose message carries a denied link was hijacked), and
  either wins over the models.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from spamtune.data.labels import POSITIVE_ID
from spamtune.errors import DataError
from spamtune.normalize import INVISIBLE, latin_lookalike, normalize_text

if TYPE_CHECKING:
    import numpy as np

    from spamtune.inference.pipeline import BatchOptions, CheckOutput, Verdict

Action = Literal["allow", "deny"]
Kind = Literal["sender", "domain", "pattern"]
ACTIONS: tuple[Action, ...] = ("allow", "deny")
KINDS: tuple[Kind, ...] = ("sender", "domain", "pattern")
MAX_VALUE = 500  # characters of an entry's value (<= 2,000 UTF-8 bytes: within a PostgreSQL index row)
MAX_SENDER = 256
PATTERN_MEMORY = 1 << 20  # bytes RE2 may use for one compiled pattern: beyond, the pattern is refused
SET_MEMORY = 512 << 20  # bytes for all patterns compiled together (10,000 ordinary patterns use ~20 MB)


@dataclass
class ListEntry:
    """One allow or deny entry, as the store keeps it."""

    action: Action
    kind: Kind
    value: str  # normalised (see the module docstring); a pattern as given
    reason: str = ""
    created_by: str = ""
    created_at: datetime.datetime | None = None
    id: int | None = None  # the store's
    removed_at: datetime.datetime | None = None
    removed_by: str | None = None

    def describe(self) -> str:
        who = f" by {self.created_by}" if self.created_by else ""
        why = f": {self.reason}" if self.reason else ""
        return f"#{self.id} {self.action} {self.kind} {self.value!r}{who}{why}"

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("created_at", "removed_at"):
            d[k] = d[k].isoformat() if d[k] is not None else None
        return d


def entry(action: str, kind: str, value: str, reason: str = "", created_by: str = "") -> ListEntry:
    """A new entry from what a person typed, normalised and checked: one clear `DataError` if it cannot be."""
    if action not in ACTIONS:
        raise DataError(f"list action {action!r}: use allow or deny")
    if kind not in KINDS:
        raise DataError(f"list kind {kind!r}: use sender, domain or pattern")
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{kind} entry: the value is empty")
    if len(value) > MAX_VALUE:
        raise DataError(f"{kind} entry: {len(value)} characters, at most {MAX_VALUE}")
    if len(reason) > MAX_VALUE:
        raise DataError(f"the reason has {len(reason)} characters, at most {MAX_VALUE}")
    normal = {"sender": normalize_sender, "domain": normalize_domain_entry, "pattern": check_pattern}[kind](value)
    return ListEntry(action, kind, normal, reason.strip(), created_by)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------
# Senders

_PHONE = re.compile(r"\+?[\d\s().\-/]{3,}")


def normalize_sender(sender: str) -> str:
    s = unicodedata.normalize("NFKC", sender).strip().casefold()
    if not s:
        raise DataError("sender entry: the value is empty")
    if len(s) > MAX_SENDER:
        raise DataError(f"sender entry: {len(s)} characters, at most {MAX_SENDER}")
    if _PHONE.fullmatch(s) and any(c.isdigit() for c in s):
        return ("+" if s.startswith("+") else "") + "".join(c for c in s if c.isdigit())
    return s


def sender_key(sender: str | None) -> str | None:
    """A request's sender as entries compare it (None: no sender given, or one no entry could ever match)."""
    if not sender:
        return None
    try:
        return normalize_sender(sender)
    except DataError:
        return None


# ---------------------------------------------------------------------------------------------------------------
# Domains

_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})  # IDNA's label separators
# a host: two or more labels of letters, digits and inner hyphens; the last one letters (or punycode)
_HOST = re.compile(r"(?<![\w.-])(?:(?:[^\W_](?:[\w-]{0,61}[^\W_])?)\.)+(?:[^\W\d_]{2,63}|xn--[a-z0-9-]{2,59})"
                   r"(?![\w-])", re.IGNORECASE)
_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*://", re.IGNORECASE)
_DIGIT_LOOKALIKE = {"0": "o", "1": "l"}


def _decode_label(label: str) -> str:
    if label.startswith("xn--"):
        try:
            return label.encode("ascii").decode("idna")
        except (UnicodeError, ValueError):
            return label  # not valid punycode: compared as written
    return label


def host_form(host: str) -> str:
    """A host as allow entries compare it: NFKC, lower case, punycode decoded, no trailing dot."""
    host = unicodedata.normalize("NFKC", INVISIBLE.sub("", host)).translate(_DOTS).lower().rstrip(".")
    return ".".join(_decode_label(label) for label in host.split("."))


@functools.lru_cache(maxsize=65536)
def skeleton(host: str) -> str:
    """`host_form` with look-alikes folded (deny entries): Cyrillic/Greek letters to Latin, 0 -> o, 1 -> l."""
    return "".join(_DIGIT_LOOKALIKE.get(c) or latin_lookalike(c) or c for c in host)


def domains_in(text: str) -> list[str]:
    """The hosts a message names (URLs, bare domains, e-mail domains), in `host_form`, each once."""
    text = unicodedata.normalize("NFKC", INVISIBLE.sub("", text)).translate(_DOTS)
    return list(dict.fromkeys(host_form(m.group()) for m in _HOST.finditer(text)))


def normalize_domain_entry(value: str) -> str:
    """A domain entry from a domain or a URL ("https://Login.PayPal.com/x" -> "login.paypal.com")."""
    v = _SCHEME.sub("", value.strip())
    v = re.split(r"[/?#]", v, maxsplit=1)[0]
    v = v.rsplit("@", 1)[-1].split(":", 1)[0]  # user@ and :port
    host = host_form(v)
    if not _HOST.fullmatch(host) or len(host) > 253:
        raise DataError(f"domain entry {value!r}: not a domain name (like example.com)")
    return host


def _suffixes(host: str) -> Iterable[str]:
    labels = host.split(".")
    return (".".join(labels[i:]) for i in range(len(labels) - 1))  # never the bare top-level domain


# ---------------------------------------------------------------------------------------------------------------
# Patterns


def _re2_options(max_mem: int) -> Any:
    import re2

    options = re2.Options()
    options.case_sensitive = False
    options.max_mem = max_mem
    options.log_errors = False  # the reason comes back in the exception; nothing on stderr
    return options


def check_pattern(pattern: str) -> str:
    import re2

    try:
        re2.compile(pattern, _re2_options(PATTERN_MEMORY))
    except re2.error as e:
        reason = e.args[0].decode("utf-8", "replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        raise DataError(f"pattern entry {pattern!r}: RE2 cannot use it ({reason})") from None
    return pattern


def pattern_text(text: str) -> str:
    """The message as patterns search it: what the model reads (NFKC, no invisibles, look-alikes folded)."""
    return normalize_text(text, "nfkc")


# ---------------------------------------------------------------------------------------------------------------
# Matching


@dataclass
class Match:
    entry: ListEntry
    matched: str  # what in the message matched: the sender, the host, the pattern's match


class CompiledLists:
    """Entries indexed for matching: dictionaries for senders and domains, one RE2 set for every pattern, so the
    cost per message hardly grows with the number of entries."""

    def __init__(self, entries: Sequence[ListEntry]) -> None:
        import re2

        self.size = len(entries)
        self.senders: dict[str, list[ListEntry]] = {}
        self.allow_domains: dict[str, list[ListEntry]] = {}
        self.deny_domains: dict[str, list[ListEntry]] = {}  # by skeleton
        self.patterns: list[ListEntry] = []
        for e in entries:
            if e.kind == "sender":
                self.senders.setdefault(e.value, []).append(e)
            elif e.kind == "domain":
                table, key = ((self.allow_domains, e.value) if e.action == "allow"
                              else (self.deny_domains, skeleton(e.value)))
                table.setdefault(key, []).append(e)
            else:
                self.patterns.append(e)
        self.pattern_set = None
        if self.patterns:
            self.pattern_set = re2.Set.SearchSet(_re2_options(SET_MEMORY))
            for e in self.patterns:
                self.pattern_set.Add(e.value)
            self.pattern_set.Compile()

    def match(self, text: str, sender: str | None = None) -> list[Match]:
        found: list[Match] = []
        key = sender_key(sender)
        if key is not None:
            found += [Match(e, sender or "") for e in self.senders.get(key, ())]
        if self.allow_domains or self.deny_domains:
            for host in domains_in(text):
                for suffix in _suffixes(host):
                    found += [Match(e, host) for e in self.allow_domains.get(suffix, ())]
                for suffix in _suffixes(skeleton(host)):
                    found += [Match(e, host) for e in self.deny_domains.get(suffix, ())]
        if self.pattern_set is not None:
            searched = pattern_text(text)
            for i in sorted(self.pattern_set.Match(searched) or ()):
                e = self.patterns[i]
                m = _search(e.value, searched)
                found.append(Match(e, m))
        return found


@functools.lru_cache(maxsize=4096)
def _compiled(pattern: str) -> Any:
    import re2

    return re2.compile(pattern, _re2_options(PATTERN_MEMORY))


def _search(pattern: str, text: str) -> str:
    m = _compiled(pattern).search(text)
    return m.group() if m else ""


class ListSource(Protocol):
    """Where the entries live (the store: monitoring/lists.py). `revision` is cheap and changes with every add or
    remove, so every process notices another's change without reading all entries."""

    def revision(self) -> Any: ...

    def entries(self) -> list[ListEntry]: ...


class ListCheck:
    """The lists as a check of the decision pipeline: a listed message gets a final verdict (deny: the positive
    label; allow: the other one) naming its entries. The entries are re-read when the source's revision changes,
    looked at no more than every `refresh_s` seconds (a change made in another process counts within that); a
    source that cannot be read keeps the last entries and says so in the log."""

    name = "lists"

    def __init__(self, source: ListSource, label_names: Sequence[str], refresh_s: float = 1.0) -> None:
        if len(label_names) != 2:
            raise ValueError("operator lists decide between two labels")
        from spamtune.inference.pipeline import Refresher

        self.source = source
        self.allow_label, self.deny_label = label_names[1 - POSITIVE_ID], label_names[POSITIVE_ID]
        self.compiled = CompiledLists([])
        self.refresh = Refresher(lambda: source.revision(), lambda: CompiledLists(source.entries()), self._use,
                                 "operator lists", lambda: self.compiled.size, refresh_s)

    def _use(self, compiled: CompiledLists) -> None:
        self.compiled = compiled

    def invalidate(self) -> None:
        """Look at the source on the next message (this process changed it)."""
        self.refresh.invalidate()

    def current(self) -> CompiledLists:
        self.refresh()
        return self.compiled

    def run(self, texts: Sequence[str], options: BatchOptions, senders: Sequence[str | None] | None = None,
            vectors: np.ndarray | None = None) -> CheckOutput:
        from spamtune.inference.pipeline import CheckOutput

        lists = self.current()
        if not lists.size:
            return CheckOutput([None] * len(texts))
        return CheckOutput([self.verdict(lists.match(t, s)) for t, s in zip(texts, senders or [None] * len(texts))])

    def verdict(self, matches: list[Match]) -> Verdict | None:
        from spamtune.inference.pipeline import Verdict

        if not matches:
            return None
        deny = [m for m in matches if m.entry.action == "deny"]
        deciding = deny or matches
        first = deciding[0].entry
        more = f" (+{len(deciding) - 1} more)" if len(deciding) > 1 else ""
        label = self.deny_label if deny else self.allow_label
        return Verdict(self.name, label, None, f"{first.action} list: {first.describe()}{more}",
                       evidence={"entries": [{"id": m.entry.id, "action": m.entry.action, "kind": m.entry.kind,
                                              "value": m.entry.value, "matched": m.matched} for m in matches]},
                       final=True)

    def explain(self, texts: Sequence[str], verdicts: Sequence[Verdict], deadline: float) -> None:
        """The entries are the evidence, already attached by `run`."""
