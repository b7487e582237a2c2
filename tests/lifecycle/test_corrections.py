"""Which corrections a retrain learns: every rule of lifecycle.corrections on the real prepared split, and the
challenger's data directory it writes."""

from __future__ import annotations

import datetime
import filecmp

import pandas as pd
import pytest

from spamtune.data import LabelSet, read_split
from spamtune.errors import ConfigError
from spamtune.lifecycle.corrections import (
    Correction,
    CorrectionPolicy,
    boost_copies,
    read_holdout,
    select_corrections,
    write_data,
)

LABELS = LabelSet(("ham", "spam"))
T0 = datetime.datetime(2026, 11, 20, tzinfo=datetime.UTC)


def corr(i: int, text: str | None, label: str = "spam", predicted: str = "ham", confidence: float = 0.7,
         source: str = "cli", learn: bool = True, minutes: int | None = None) -> Correction:
    """A correction, by an operator unless `source` says "api" (an end user)."""
    return Correction(id=f"{i:032x}", text=text, label=label, predicted=predicted, confidence=confidence,
                      source=source, learn=learn, updated_at=T0 + datetime.timedelta(minutes=i if minutes is None
                                                                                     else minutes))


def new_messages(n: int, start: int = 0) -> list[str]:
    return [f"Hi mum, new number {k}, can you send £{100 + k} to my friend's account? x"
            for k in range(start, start + n)]


def test_every_rule(data_dir):
    test_text = read_split(data_dir / "test.csv")["Text"][0]
    unused_text = read_split(data_dir / "unused.csv")["Text"][0]
    train = read_split(data_dir / "train.csv")
    ham_in_train = train[train["Label"] == 0]["Text"].iloc[0]
    fresh = new_messages(40)
    cs = [corr(1, fresh[0], learn=False), corr(2, None), corr(3, fresh[1], label="eggs"),
          corr(4, fresh[2], label="spam"), corr(5, fresh[2], label="ham", predicted="spam"),  # conflicting
          corr(6, test_text), corr(7, unused_text, label="spam"), corr(8, ham_in_train, label="ham",
                                                                      predicted="spam"),
          corr(9, ham_in_train, label="ham", predicted="spam", minutes=100),  # the same message again
          corr(10, train[train["Label"] == 1]["Text"].iloc[0], label="ham", predicted="spam")]
    cs += [corr(20 + k, t) for k, t in enumerate(fresh[3:])]  # 37 ordinary new corrections
    cs += [corr(80, new_messages(1, 500)[0], confidence=0.999, source="api"),  # an end user against a confident model
           corr(81, new_messages(1, 501)[0], confidence=0.999, source="admin")]  # an operator: trusted
    out = select_corrections(cs, data_dir, LABELS, CorrectionPolicy())
    reasons = {k: [c.id for c in v] for k, v in out.left_out.items()}
    assert reasons["learn: false"] == [cs[0].id] and reasons["no text"] == [cs[1].id]
    assert reasons["unknown label"] == [cs[2].id]
    assert sorted(reasons["conflicting corrections"]) == sorted([cs[3].id, cs[4].id])
    assert reasons["in an evaluation split"] == [cs[5].id, cs[6].id]  # test and unused: never learnt
    assert reasons["already in the data"] == [cs[8].id] and reasons["repeated"] == [cs[7].id]  # the latest stands
    assert reasons["contradicts the data"] == [cs[9].id]
    assert [c.id for c in out.needs_review] == [cs[-2].id]
    learnt_and_held = {c.id for c in out.learnt + out.holdout}
    assert cs[-1].id in learnt_and_held and cs[-2].id not in learnt_and_held
    assert len(out.learnt) + len(out.holdout) == 38
    assert 3 <= len(out.holdout) <= 14  # 20 % of 38, by hash
    assert not {c.id for c in out.learnt} & {c.id for c in out.holdout}
    assert len(out.validation) < len(out.train)
    # fixed by the message: the same corrections sort the same way again, whatever their order or ids
    again = select_corrections(list(reversed(cs)), data_dir, LABELS, CorrectionPolicy())
    assert {c.text for c in again.holdout} == {c.text for c in out.holdout}
    forced = select_corrections(cs, data_dir, LABELS, CorrectionPolicy(learn_unreviewed=True))
    assert cs[-2].id in {c.id for c in forced.learnt + forced.holdout} and not forced.needs_review


def test_the_cap_keeps_the_newest(data_dir):
    cs = [corr(i, t) for i, t in enumerate(new_messages(200))]
    out = select_corrections(cs, data_dir, LABELS, CorrectionPolicy(max_share=0.05, holdout=0.0), limit=100)
    cap = int(0.05 * 200 / 0.95)  # 100 train + 100 validation rows under --limit 100
    assert len(out.learnt) == cap == 10
    assert {c.id for c in out.learnt} == {c.id for c in cs[-cap:]}
    assert len(out.left_out["over the cap"]) == 200 - cap


def test_write_data_adds_rows_with_provenance_and_copies_the_rest(data_dir, tmp_path):
    cs = [corr(i, t) for i, t in enumerate(new_messages(30))]
    out = select_corrections(cs, data_dir, LABELS, CorrectionPolicy())
    write_data(tmp_path / "d", data_dir, out, LABELS, limit=50)
    train = pd.read_csv(tmp_path / "d" / "train.csv", keep_default_na=False)
    assert list(train.columns) == ["Label", "Text", "Source"]
    assert (train["Source"] == "data").sum() == 50 and len(train) == 50 + len(out.train)
    added = train[train["Source"] != "data"]
    assert set(added["Source"]) == {f"feedback:{c.id}" for c in out.train} and set(added["Label"]) == {1}
    assert len(read_split(tmp_path / "d" / "validation.csv")) == 50 + len(out.validation)
    for name in ("test.csv", "unused.csv", "labels.json"):  # evaluation data exactly as it was
        assert filecmp.cmp(data_dir / name, tmp_path / "d" / name, shallow=False)
    assert list(read_holdout(tmp_path / "d")["Text"]) == [c.text for c in out.holdout]


def test_a_handful_of_corrections_is_boosted_with_perturbed_copies_within_the_cap(data_dir, tmp_path):
    cs = [corr(i, t) for i, t in enumerate(new_messages(5))]
    out = select_corrections(cs, data_dir, LABELS, CorrectionPolicy(holdout=0.0))
    assert len(out.train) + len(out.validation) == 5 and out.train
    policy = CorrectionPolicy(boost=10)
    copies = boost_copies(policy, 50, len(out.train))  # room for floor(0.2 * 50 / 0.8) = 12 rows
    assert copies == min(10, 12 // len(out.train) - 1)
    assert boost_copies(policy, 10_000, 3) == 10 and boost_copies(CorrectionPolicy(boost=0), 10_000, 3) == 0
    write_data(tmp_path / "d", data_dir, out, LABELS, limit=50, copies=copies)
    train = pd.read_csv(tmp_path / "d" / "train.csv", keep_default_na=False)
    added = train[train["Source"] != "data"]
    assert len(added) == len(out.train) * (1 + copies) <= 12 and set(added["Label"]) == {1}
    for c in out.train:  # the message itself, then copies that differ from it (perturbed), all traced to it
        rows = added[added["Source"] == f"feedback:{c.id}"]["Text"].tolist()
        assert rows[0] == c.text and len(rows) == 1 + copies
        assert sum(r != c.text for r in rows[1:]) >= copies // 2
    assert len(read_split(tmp_path / "d" / "validation.csv")) == 50 + len(out.validation)  # never boosted
    with pytest.raises(ConfigError, match="--boost"):
        CorrectionPolicy(boost=51)


def test_end_users_corrections_neither_dominate_nor_serve_as_ground_truth(data_dir):
    """The review's attack: one client flips hundreds of answers below the review threshold. They are never held
    out as the comparison's truth, and at most --untrusted-share of the training rows is learnt from them; an
    operator's corrections are not crowded out."""
    flips = [corr(i, t, label="ham", predicted="spam", confidence=0.98, source="api")
             for i, t in enumerate(new_messages(600))]
    operators = [corr(1000 + i, t, source="admin") for i, t in enumerate(new_messages(40, 700))]
    out = select_corrections(flips + operators, data_dir, LABELS, CorrectionPolicy())
    n_data = len(read_split(data_dir / "train.csv")) + len(read_split(data_dir / "validation.csv"))
    untrusted_learnt = [c for c in out.learnt if c.source == "api"]
    assert 0 < len(untrusted_learnt) <= 0.02 * n_data / 0.98
    assert all(c.source == "admin" for c in out.holdout) and out.holdout
    assert len(out.left_out["over the untrusted cap"]) == 600 - len(untrusted_learnt)
    assert {c.id for c in operators} <= {c.id for c in out.learnt + out.holdout}


def test_bad_policies_are_config_errors():
    for kw in ({"holdout": 1.0}, {"max_share": -0.1}, {"confident": 0.3}, {"validation": 0}):
        with pytest.raises(ConfigError):
            CorrectionPolicy(**kw)
