"""Operator lists in the store (SQLite and a real PostgreSQL) and `spamtune lists` / `classify --db` on them."""

from __future__ import annotations

import json

import pytest

from spamtune.cli import main
from spamtune.errors import DataError
from spamtune.inference.lists import entry
from spamtune.monitoring.lists import ListConflict, OperatorLists, read_csv, write_csv
from spamtune.monitoring.store import PredictionStore, Query


def test_entries_are_added_whole_removed_with_history_and_every_change_moves_the_revision(store_url):
    lists = OperatorLists(PredictionStore.open(store_url))
    r0 = lists.revision()
    (a, b), skipped = lists.add([entry("deny", "domain", "evil.example", "wave 1"),
                                 entry("allow", "sender", "+44 7700 900123")], by="alice")
    assert skipped == 0 and (a.value, b.value) == ("evil.example", "+447700900123") and a.created_by == "alice"
    r1 = lists.revision()
    assert r1 != r0
    with pytest.raises(ListConflict, match="on the lists already"):  # nothing of the batch is added
        lists.add([entry("deny", "pattern", "prize"), entry("deny", "domain", "EVIL.example")], by="bob")
    assert [e.value for e in lists.entries()] == ["evil.example", "+447700900123"] and lists.revision() == r1
    (gone,) = lists.remove([a.id], by="bob")
    assert gone.removed_by == "bob" and lists.revision() != r1
    assert [e.id for e in lists.entries()] == [b.id]
    history = lists.entries(include_removed=True)
    assert [(e.id, e.removed_by) for e in history] == [(a.id, "bob"), (b.id, None)]
    with pytest.raises(ListConflict, match=f"no active list entry has the id {a.id}"):
        lists.remove([a.id], by="bob")
    (again,), _ = lists.add([entry("deny", "domain", "evil.example", "wave 2")], by="carol")  # re-added: a new id
    assert again.id != a.id
    added, skipped = lists.add([entry("deny", "domain", "evil.example"), entry("deny", "pattern", "prize")],
                               by="dave", skip_existing=True)
    assert [e.value for e in added] == ["prize"] and skipped == 1
    with pytest.raises(DataError, match="is not a name"):
        lists.add([entry("deny", "pattern", "x")], by="alice\x1b[2J")


def test_csv_export_reads_back_exactly_and_a_bad_row_names_its_line(tmp_path):
    import io

    entries = [entry("allow", "sender", "+44 7700 900123", "=the bank"), entry("deny", "pattern", "'quoted"),
               entry("deny", "domain", "xn--pypal-4ve.com", "look-alike, \"quoted\"")]
    buf = io.StringIO()
    assert write_csv(entries, buf) == 3
    text = buf.getvalue()
    assert "\n=" not in text and ",=" not in text and ",+" not in text  # no cell a spreadsheet would run
    back = read_csv(text, "lists.csv")
    assert [(e.action, e.kind, e.value, e.reason) for e in back] == [
        (e.action, e.kind, e.value, e.reason) for e in entries]
    with pytest.raises(DataError, match=r"lists.csv, line 3: domain entry 'no domain': not a domain name"):
        read_csv("action,kind,value\ndeny,domain,evil.example\ndeny,domain,no domain\n", "lists.csv")
    with pytest.raises(DataError, match="line 2: more fields than the header has"):  # never a cut pattern
        read_csv("action,kind,value,reason\ndeny,pattern,hi .{0,40}number,why\n", "lists.csv")
    with pytest.raises(DataError, match="no column 'kind'"):
        read_csv("action,value\ndeny,x\n", "lists.csv")


def test_the_cli_adds_lists_imports_exports_and_removes(store_url, tmp_path, capsys):
    PredictionStore.open(store_url)
    db = ["--db", store_url]
    assert main(["lists", "add", "deny", "domain", "https://Parcel-Fee.example/pay", "--reason", "parcel wave",
                 "--by", "alice", *db]) == 0
    assert "added #1 deny domain 'parcel-fee.example' by alice: parcel wave" in capsys.readouterr().out
    # one clear line and exit 2 for what a person mistyped; nothing added
    for bad, said in ((["deny", "pattern", "(unclosed"], "RE2 cannot use it (missing ): (unclosed)"),
                      (["deny", "domain", "parcel-fee.example"], "on the lists already (entry #1)")):
        assert main(["lists", "add", *bad, *db]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and said in err and "Traceback" not in err
    csv_in = tmp_path / "in.csv"
    csv_in.write_text("action,kind,value,reason\nallow,sender,+44 7700 900123,bank\n"
                      "deny,domain,parcel-fee.example,again\ndeny,pattern,\"hi (mum|dad).{0,40}new number\",\n")
    assert main(["lists", "import", str(csv_in), "--by", "bob", *db]) == 0
    said = capsys.readouterr().out
    assert "imported 2 entries" in said and "(1 already there, skipped)" in said
    bad = tmp_path / "bad.csv"
    bad.write_text("action,kind,value\ndeny,domain,fine.example\nban,domain,x.example\n")
    assert main(["lists", "import", str(bad), *db]) == 2
    assert "bad.csv, line 3: list action 'ban'" in capsys.readouterr().err
    assert main(["lists", "list", "--json", *db]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["action"], r["kind"], r["value"]) for r in rows] == [
        ("deny", "domain", "parcel-fee.example"), ("allow", "sender", "+447700900123"),
        ("deny", "pattern", "hi (mum|dad).{0,40}new number")]  # the bad file added nothing
    out = tmp_path / "out.csv"
    out.write_text("keep me")
    assert main(["lists", "export", str(out), *db]) == 2  # never overwritten unasked
    assert out.read_text() == "keep me" and "--overwrite" in capsys.readouterr().err
    assert main(["lists", "export", str(out), "--overwrite", *db]) == 0
    assert [e.value for e in read_csv(out.read_text(), "out.csv")] == [r["value"] for r in rows]
    assert main(["lists", "remove", "1", "--by", "carol", *db]) == 0
    assert "removed #1" in capsys.readouterr().out
    assert main(["lists", "remove", "1", *db]) == 2
    assert "no active list entry has the id 1" in capsys.readouterr().err
    assert main(["lists", "list", "--removed", *db]) == 0
    assert "[removed" in capsys.readouterr().out


def test_classify_with_a_store_applies_its_lists_and_records_senders(tiny_run, store_url, tmp_path, capsys):
    store = PredictionStore.open(store_url)
    OperatorLists(store).add([entry("deny", "domain", "parcel-fee.example", "parcel wave"),
                              entry("allow", "sender", "+447700900123", "the bank")], by="alice")
    inbox = tmp_path / "inbox.csv"
    inbox.write_text("body,from\n\"Your parcel is held, pay at https://track.parcel-fee.example\",+15550100\n"
                     "\"Your code is 1234. WIN a FREE prize!\",+44 7700 900123\n\"see you at 6\",\n")
    out = tmp_path / "scored.jsonl"
    assert main(["classify", str(tiny_run), "--file", str(inbox), "--text-col", "body", "--sender-col", "from",
                 "--db", store_url, "--out", str(out)]) == 0
    capsys.readouterr()
    deny, allow, plain = (json.loads(line) for line in out.read_text().splitlines())
    assert deny["label"] == "spam" and deny["decision"] == "block" and deny["checks"][0]["check"] == "lists"
    assert "deny list: #1 deny domain 'parcel-fee.example' by alice: parcel wave" in deny["checks"][0]["reason"]
    assert allow["label"] == "ham" and allow["decision"] == "allow" and [c["check"] for c in allow["checks"]] == [
        "lists"]
    assert [c["check"] for c in plain["checks"]] == ["model"]
    rows = {r["text"][:10]: r for r in store.query(Query(limit=10))}
    assert rows["Your parce"]["sender"] == "+15550100" and rows["see you at"]["sender"] is None
    assert main(["classify", str(tiny_run), "--sender", "+44 7700 900123", "--db", store_url, "--json",
                 "WIN a FREE prize now"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["checks"][0]["reason"].startswith("allow list: #2")
    assert main(["classify", str(tiny_run), "--sender-col", "from", "hello"]) == 2
    assert "--sender-col goes with --file" in capsys.readouterr().err
    long_sender = tmp_path / "long.csv"
    long_sender.write_text("body,from\nhello there,+15550100\nsee you,x" + "9" * 300 + "\n")
    assert main(["classify", str(tiny_run), "--file", str(long_sender), "--text-col", "body", "--sender-col", "from",
                 "--db", store_url, "--out", str(tmp_path / "long.jsonl")]) == 2
    assert "long.csv line 3: the sender has 301 characters, at most 256" in capsys.readouterr().err
    assert not (tmp_path / "long.jsonl").exists()  # nothing half-written
