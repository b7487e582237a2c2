"""Operator lists: how each kind of entry matches, what is refused, and the lists as the pipeline's first check."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from spamtune.errors import DataError
from spamtune.inference.lists import CompiledLists, ListCheck, ListEntry, domains_in, entry
from spamtune.inference.pipeline import BatchOptions
from spamtune.normalize import normalize_text


def compiled(*specs: tuple[str, str, str]) -> CompiledLists:
    entries = [entry(*spec) for spec in specs]
    for i, e in enumerate(entries, start=1):
        e.id = i
    return CompiledLists(entries)


def ids(lists: CompiledLists, text: str, sender: str | None = None) -> list[int]:
    return [m.entry.id for m in lists.match(text, sender)]  # type: ignore[misc]


def test_hosts_are_found_in_urls_bare_domains_and_addresses_but_not_in_numbers():
    text = ("Pay at https://Login.PayPa1.com/x?id=3 or www.xn--pypal-4ve.com, mail bob@Mail.Example.org; "
            "costs 3.50 e.g. today")
    assert domains_in(text) == ["login.paypa1.com", "www.p\u0430ypal.com", "mail.example.org"]
    assert domains_in("parcel\u3002fees\uff0euk") == ["parcel.fees.uk"]  # IDNA's other dots
    assert domains_in("pay\u200bpal.com") == ["paypal.com"]  # a zero-width space inside


def test_domain_entries_match_subdomains_and_deny_entries_also_look_alikes():
    lists = compiled(("deny", "domain", "https://PayPal.com/login"), ("allow", "domain", "example.org"))
    assert lists.deny_domains and "paypal.com" in {e.value for es in lists.deny_domains.values() for e in es}
    assert ids(lists, "log in at secure.paypal.com now") == [1]
    assert ids(lists, "log in at p\u0430ypa1.com now") == [1]  # Cyrillic а and a digit one: a look-alike
    assert ids(lists, "log in at xn--pypal-4ve.com") == [1]  # punycode of the Cyrillic look-alike
    assert ids(lists, "see notpaypal.com or paypal.com.evil.net") == []  # not the domain, nor a subdomain
    assert ids(lists, "see mail.EXAMPLE.org") == [2]
    # an allow entry never matches a look-alike: that is the domain a phisher registers
    assert ids(lists, "see ex\u0430mple.org") == [] and ids(lists, "see examp1e.org") == []


def test_senders_compare_phone_numbers_by_digits_and_addresses_whole():
    lists = compiled(("allow", "sender", "+44 (7700) 900-123"), ("deny", "sender", "Promo@Spam.example"))
    assert ids(lists, "hi", "+447700900123") == [1]
    assert ids(lists, "hi", "+44 7700 900 123") == [1]
    assert ids(lists, "hi", "447700900123") == []  # no "+": another number
    assert ids(lists, "hi", "promo@spam.EXAMPLE") == [2]
    assert ids(lists, "hi", None) == [] and ids(lists, "hi", "") == []


def test_patterns_are_case_insensitive_and_read_the_message_as_the_model_does():
    lists = compiled(("deny", "pattern", r"hi (mum|dad).{0,40}new (number|phone)"))
    assert ids(lists, "HI MUM, this is my NEW NUMBER") == [1]
    assert ids(lists, "h\u0456 mum, my new ph\u043ene") == [1]  # Cyrillic look-alikes folded
    assert ids(lists, "hi mu\u200bm, new number") == [1]  # an invisible character removed
    assert ids(lists, "hi mum, see you later") == []


def test_a_deny_entry_wins_over_an_allow_entry():
    lists = compiled(("allow", "sender", "+447700900123"), ("deny", "domain", "evil.example"))
    check = ListCheck(Fixed([*lists.senders["+447700900123"], *lists.deny_domains["evil.example"]]), ["ham", "spam"])
    out = check.run(["pay at evil.example", "see you at 6"], BatchOptions(), ["+447700900123", "+447700900123"])
    deny, allow = out.verdicts
    assert deny is not None and deny.label == "spam" and deny.final and deny.reason.startswith("deny list: #2")
    assert {e["action"] for e in deny.evidence["entries"]} == {"allow", "deny"}
    assert allow is not None and allow.label == "ham" and allow.final and allow.reason.startswith("allow list: #1")


@pytest.mark.parametrize("spec, message", [
    (("block", "sender", "x"), "list action 'block': use allow or deny"),
    (("deny", "list", "x"), "list kind 'list': use sender, domain or pattern"),
    (("deny", "domain", "not a domain"), "domain entry 'not a domain': not a domain name (like example.com)"),
    (("deny", "domain", "com"), "not a domain name"),
    (("deny", "pattern", "(a"), "pattern entry '(a': RE2 cannot use it (missing ): (a)"),
    (("deny", "pattern", r"(a+)+\1"), "RE2 cannot use it (invalid escape sequence: \\1)"),  # backreferences
    (("deny", "pattern", r"\pL{1000}"), "RE2 cannot use it (pattern too large - compile failed)"),
    (("deny", "pattern", " "), "pattern entry: the value is empty"),
    (("deny", "pattern", "x" * 501), "pattern entry: 501 characters, at most 500"),
])
def test_bad_entries_are_one_clear_error(spec, message, capfd):
    with pytest.raises(DataError) as e:
        entry(*spec)
    assert message in str(e.value)
    assert capfd.readouterr().err == ""  # RE2 logs nothing of its own


class Fixed:
    """A list source held in memory, counting its reads."""

    def __init__(self, entries: list[ListEntry]) -> None:
        self.items, self.reads, self.rev = entries, 0, 1

    def revision(self) -> int:
        return self.rev

    def entries(self) -> list[ListEntry]:
        self.reads += 1
        return list(self.items)


def test_the_check_rereads_entries_only_when_the_revision_moves():
    source = Fixed([])
    check = ListCheck(source, ["ham", "spam"], refresh_s=0.05)
    assert check.run(["see evil.example"], BatchOptions()).verdicts == [None]
    assert source.reads == 1
    new = entry("deny", "domain", "evil.example")
    new.id = 1
    source.items.append(new)
    assert check.run(["see evil.example"], BatchOptions()).verdicts == [None]  # within refresh_s: not looked at
    time.sleep(0.06)
    assert check.run(["see evil.example"], BatchOptions()).verdicts == [None]  # revision unchanged: not re-read
    source.rev = 2
    time.sleep(0.06)
    (v,) = check.run(["see evil.example"], BatchOptions()).verdicts
    assert v is not None and v.label == "spam" and source.reads == 2


def test_lists_decide_first_and_leave_every_other_decision_as_it_was(tiny_run, data_dir):
    import pandas as pd

    from spamtune.inference import TextClassifier

    texts = pd.read_csv(data_dir / "test.csv")["Text"].tolist()[:40]
    plain = TextClassifier.load(tiny_run).decide(texts)
    clf = TextClassifier.load(tiny_run)
    listed = Fixed([entry("deny", "pattern", r"\bfree\b"), entry("allow", "sender", "+447700900123")])
    for i, e in enumerate(listed.items, start=1):
        e.id = i
    clf.pipeline.put_first(ListCheck(listed, clf.label_names))
    clf.pipeline.put_first(ListCheck(listed, clf.label_names))  # once only
    assert clf.pipeline.names[0] == "lists" and clf.pipeline.names.count("lists") == 1
    senders = ["+44 7700 900123" if i % 7 == 0 else None for i in range(len(texts))]
    got = clf.decide(texts, senders=senders)
    n_listed = 0
    for text, sender, before, after in zip(texts, senders, plain, got):
        free = re.search(r"\bfree\b", normalize_text(text, "nfkc"), re.ASCII | re.IGNORECASE) is not None
        if sender or free:
            n_listed += 1
            (v,) = after.checks  # decided by the lists alone: the model never ran on it
            assert v.check == "lists" and v.final
            assert after.label == ("spam" if free else "ham")
            assert after.band == ("block" if free else "allow")
        else:
            assert [v.check for v in after.checks] == ["model"]
            assert after.label == before.label and after.band == before.band
            np.testing.assert_allclose(after.scores["spam"], before.scores["spam"], atol=1e-6)
    assert n_listed >= 6
