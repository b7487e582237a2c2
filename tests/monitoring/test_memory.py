"""The memory of corrections: the threshold the run picks, the store's rules (SQLite and a real PostgreSQL), the
guard, retirement, and the check deciding a repeat of a corrected message in process."""

from __future__ import annotations

import dataclasses
import datetime

import numpy as np
import pandas as pd
import pytest

from spamtune.calibration.decisions import (
    MEMORY_FLOOR,
    MemoryCalibration,
    near_duplicate_level,
    pick_memory_threshold,
    unit_rows,
)
from spamtune.data import read_split
from spamtune.inference import TextClassifier
from spamtune.inference.memory import FLIP_LIMIT, MemoryCheck, MemoryEntry
from spamtune.monitoring.memory import StoreMemory, learnt_ids, memory_check
from spamtune.monitoring.store import PredictionRecord, PredictionStore

UTC = datetime.UTC


def test_the_threshold_is_the_lowest_that_keeps_the_added_ham_within_budget():
    entries = np.array([[1.0, 0.0]])
    angles = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])  # radians from the entry
    ham = np.stack([np.cos(angles), np.sin(angles)], axis=1) * 3.0  # length does not matter
    sims = np.cos(angles)
    blocked = np.zeros(10, dtype=bool)
    t, added = pick_memory_threshold(entries, ham, blocked, budget=0.1)  # one ham in ten may be added
    assert t == pytest.approx(np.nextafter(np.float32(sims[1]), np.inf), abs=1e-6) and added == pytest.approx(0.1)
    blocked[0] = True  # the model blocks the nearest ham already: the memory adds nothing there
    t2, added2 = pick_memory_threshold(entries, ham, blocked, budget=0.1)
    assert t2 == pytest.approx(np.nextafter(np.float32(sims[2]), np.inf), abs=1e-6) and added2 == pytest.approx(0.1)
    t3, added3 = pick_memory_threshold(entries, -ham, blocked, budget=0.0)  # ham far away: the floor holds
    assert t3 == MEMORY_FLOOR and added3 == 0.0
    t4, added4 = pick_memory_threshold(entries, ham, np.zeros(10, dtype=bool), budget=0.1, at_least=0.99)
    assert t4 == 0.99 and added4 == pytest.approx(0.1)  # only the ham at angle 0.1 (cos 0.995) is that close
    with pytest.raises(ValueError, match="no ham"):
        pick_memory_threshold(entries, ham[:0], blocked[:0])


def test_the_near_duplicate_level_is_what_few_distinct_ham_reach_to_another():
    angles = np.array([0.0, 0.0, 0.05, 1.0, 2.0, 3.0])  # a verbatim repeat, a near copy, three far apart
    ham = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    nearest = [np.cos(0.05), np.cos(0.05), np.cos(0.05), np.cos(0.95), np.cos(1.0), np.cos(1.0)]
    assert near_duplicate_level(ham, share=1.0) == pytest.approx(np.cos(0.05), abs=1e-6)  # the repeat is not one
    assert near_duplicate_level(ham, share=0.5) == pytest.approx(np.quantile(nearest, 0.5), abs=1e-6)
    assert near_duplicate_level(ham[:1]) == MEMORY_FLOOR


def test_training_stores_the_memory_calibration(tiny_run, data_dir):
    cal = MemoryCalibration.load(tiny_run)
    assert cal is not None and MEMORY_FLOOR <= cal.threshold <= 1.0 and cal.threshold >= cal.near_duplicate
    n_val = len(pd.read_csv(data_dir / "validation.csv")[:32])
    assert cal.picked_on["calibration_ham"] + n_val == len(cal.guard_labels) == len(cal.guard_vectors)
    assert cal.picked_on["entries"] == int((cal.guard_labels[:n_val] == 1).sum())
    assert (cal.guard_labels[n_val:] == 0).all()
    np.testing.assert_allclose(np.linalg.norm(cal.guard_vectors, axis=1), 1.0, atol=1e-5)
    assert cal.added_fpr <= 0.0005 + 1e-12
    # validation's vectors came from the cached frozen prefix: the same as the whole model's at serving time
    val_texts = list(read_split(data_dir / "validation.csv")["Text"][:32])
    served = TextClassifier.load(tiny_run).embeddings(val_texts)
    np.testing.assert_allclose(cal.guard_vectors[:n_val], unit_rows(served), atol=1e-5)


def record(store: PredictionStore, text: str | None, label: str, confidence: float) -> str:
    other = "spam" if label == "ham" else "ham"
    r = PredictionRecord(run_id="r", source="serve", text=text, text_sha256=str(hash(text)), label=label,
                         decision=None, scores={label: confidence, other: 1 - confidence}, positive_score=None,
                         threshold=None, review_threshold=None, latency_ms=1.0, truncated=False)
    store.insert([r])
    return r.id


def test_the_store_rules(store_url):
    store = PredictionStore.open(store_url)
    memory = StoreMemory(store)
    assert memory.entries() == [] and memory.revision() == (0, None)
    sure = record(store, "hi mum, new number, send £200", "ham", 0.995)
    unsure = record(store, "hi mum, my phone broke, can you pay this", "ham", 0.7)
    hashed = record(store, None, "ham", 0.6)
    twice = [record(store, "same words", "ham", 0.6) for _ in range(3)]
    store.add_feedback(sure, "spam", source="api")  # an end user against a 99.5 % sure prediction
    store.add_feedback(unsure, "spam", source="api")
    store.add_feedback(hashed, "spam", source="cli")
    store.add_feedback(twice[0], "spam", source="cli")
    store.add_feedback(twice[1], "ham", source="cli")  # the same message corrected both ways
    rev = memory.revision()
    status = {e.id: e.status for e in memory.entries()}
    assert status == {sure: "needs review", unsure: "active", hashed: "no text", twice[0]: "conflicting corrections",
                      twice[1]: "conflicting corrections"}
    store.add_feedback(sure, "spam", source="admin")  # an operator confirms it
    assert memory.revision() != rev
    entries = {e.id: e for e in memory.entries()}
    assert entries[sure].status == "active" and entries[sure].trusted and not entries[unsure].trusted
    store.add_feedback(twice[1], "spam", source="cli", replace=True)  # now both say spam: the latest stands
    store.add_feedback(twice[2], "spam", source="cli")
    status = {e.id: e.status for e in memory.entries()}
    assert [status[i] for i in twice] == ["repeated", "repeated", "active"]


def test_learnt_corrections_are_read_from_a_retrains_data(tmp_path):
    pd.DataFrame({"Label": [0, 1, 1], "Text": ["a", "b", "c"],
                  "Source": ["data", "feedback:abc", "feedback:def"]}).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame({"Label": [1], "Text": ["d"], "Source": ["feedback:ghi"]}).to_csv(tmp_path / "validation.csv",
                                                                                 index=False)
    assert learnt_ids(str(tmp_path)) == {"abc", "def", "ghi"}
    assert learnt_ids(None) == set() and learnt_ids(str(tmp_path / "gone")) == set()


class Source:
    """Entries handed in directly: the check's own rules, without a store."""

    def __init__(self, entries: list[MemoryEntry]) -> None:
        self.list, self.rev = entries, 0

    def revision(self) -> int:
        return self.rev

    def entries(self) -> list[MemoryEntry]:
        return [dataclasses.replace(e) for e in self.list]


def entry(id: str, text: str, label: str) -> MemoryEntry:
    return MemoryEntry(id=id, text=text, label=label, source="admin", trusted=True,
                       corrected_at=datetime.datetime.now(UTC))


SCAM = "Hi mum, I dropped my phone, this is my new number. Can you send £150 for a new one today? x"


def test_a_corrected_message_decides_its_repeat_and_nothing_far_from_it(tiny_run, data_dir):
    clf = TextClassifier.load(tiny_run)
    cal = MemoryCalibration.load(tiny_run)
    assert cal is not None
    before = clf.decide([SCAM, "Are we still on for dinner tonight?"])
    corrected = "ham" if before[0].label == "spam" else "spam"
    source = Source([entry("p1", SCAM, corrected)])
    check = MemoryCheck(source, clf, cal)
    clf.pipeline.put_after_model(check)
    assert clf.pipeline.names == ["model", "memory"]
    repeat, far = clf.decide([SCAM, "Are we still on for dinner tonight?"])
    memo = repeat.checks[-1]
    assert memo.check == "memory" and memo.final and memo.label == corrected == repeat.label
    assert memo.score == pytest.approx(1.0, abs=1e-4) and memo.evidence["neighbours"][0]["id"] == "p1"
    assert "corrected to" in memo.reason and "by an operator" in memo.reason
    assert [v.check for v in far.checks] == ["model"] and far.label == before[1].label
    # the decision's logits are the memory's label, whatever the model said
    assert repeat.scores[corrected] > 0.999
    # a corrected message as near held-out messages of the other label as the threshold: refused, listed
    v = unit_rows(clf.embeddings([SCAM]))[0]
    other = 0 if corrected == "spam" else 1
    crowded = dataclasses.replace(cal, guard_vectors=np.stack([v] * (FLIP_LIMIT + 1)),
                                  guard_labels=np.full(FLIP_LIMIT + 1, other))
    by_user = dataclasses.replace(entry("p1", SCAM, corrected), source="api", trusted=False)
    refusing = MemoryCheck(Source([by_user]), clf, crowded)
    refusing.refresh()
    (e,) = refusing.entries
    assert e.status == "would flip held-out messages" and e.flips == FLIP_LIMIT + 1 and not refusing.active
    # an operator's correction there is remembered, reaching only what is nearer than those messages
    narrowed = MemoryCheck(Source([entry("p1", SCAM, corrected)]), clf, crowded)
    narrowed.refresh()
    assert narrowed.active and narrowed.active[0].radius > 1.0  # not even its own repeat (similarity 1)
    clf.pipeline.checks[-1] = narrowed
    assert [v.check for v in clf.decide([SCAM])[0].checks] == ["model"]
    # a run that learnt the correction retires it
    retired = MemoryCheck(Source([entry("p1", SCAM, corrected)]), clf, cal, learnt={"p1"})
    retired.refresh()
    assert retired.entries[0].status == "learnt by this run" and not retired.active


def test_a_new_correction_is_seen_after_the_revision_moves(tiny_run):
    clf = TextClassifier.load(tiny_run)
    cal = MemoryCalibration.load(tiny_run)
    source = Source([])
    check = MemoryCheck(source, clf, cal, refresh_s=0.0)
    clf.pipeline.put_after_model(check)
    assert clf.decide([SCAM])[0].checks[-1].check == "model"
    source.list = [entry("p1", SCAM, "spam")]
    assert clf.decide([SCAM])[0].checks[-1].check == "model"  # the revision did not move: not re-read
    source.rev += 1
    d = clf.decide([SCAM])[0]
    assert d.checks[-1].check == "memory" and d.label == "spam"


def test_runs_without_a_memory_get_no_check(tiny_run, tmp_path):
    import shutil

    store = PredictionStore.open(f"sqlite:///{tmp_path / 's.sqlite'}")
    assert isinstance(memory_check(store, TextClassifier.load(tiny_run)), MemoryCheck)
    old = tmp_path / "old"
    shutil.copytree(tiny_run, old)
    (old / MemoryCalibration.FILE).unlink()  # a run trained before the memory
    assert memory_check(store, TextClassifier.load(old)) is None


def test_a_store_that_cannot_be_read_keeps_the_last_entries(tiny_run, caplog):
    clf = TextClassifier.load(tiny_run)
    source = Source([entry("p1", SCAM, "spam")])
    check = MemoryCheck(source, clf, MemoryCalibration.load(tiny_run), refresh_s=0.0)
    clf.pipeline.put_after_model(check)
    assert clf.decide([SCAM])[0].checks[-1].check == "memory"

    def down() -> int:
        raise ConnectionError("the database is down")

    source.revision = down  # type: ignore[method-assign]
    with caplog.at_level("WARNING"):
        assert clf.decide([SCAM])[0].checks[-1].check == "memory"
    assert "not refreshed (ConnectionError: the database is down); using the last 1 entries" in caplog.text


def test_spamtune_memory_lists_every_correction_with_its_status(tiny_run, store_url, tmp_path, capsys):
    import json
    import shutil

    from spamtune.cli import main

    store = PredictionStore.open(store_url)
    active = record(store, SCAM, "ham", 0.6)
    waiting = record(store, "Hi dad, new phone, can you send £80 for the bill?", "ham", 0.995)
    store.add_feedback(active, "spam", source="cli")
    store.add_feedback(waiting, "spam", source="api")
    assert main(["memory", str(tiny_run), "--db", store_url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("1 of 2 corrections remembered")
    assert out[1].startswith("needs review") and waiting in out[1] and " user " in out[1]
    assert out[2].startswith("active") and active in out[2] and " operator " in out[2]
    assert main(["memory", str(tiny_run), "--db", store_url, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["id"], r["status"]) for r in rows] == [(waiting, "needs review"), (active, "active")]
    assert rows[0]["corrected_at"].endswith("+00:00")  # UTC on both databases
    old = tmp_path / "old"
    shutil.copytree(tiny_run, old)
    (old / MemoryCalibration.FILE).unlink()
    assert main(["memory", str(old), "--db", store_url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no memory of corrections" in err
