"""`spamtune audit`: label errors planted in the training split (and a wrong correction) are found, out of fold."""

from __future__ import annotations

import csv
import shutil

import pandas as pd
import pytest

from spamtune.cli import main
from spamtune.errors import ConfigError, DataError
from spamtune.lifecycle.audit import AuditOptions, audit
from spamtune.monitoring.store import PredictionRecord, PredictionStore

FLIPPED = 20


@pytest.fixture(scope="module")
def planted(data_dir, tmp_path_factory):
    """The data dir with the first FLIPPED training spam relabelled ham; their data rows (from 1)."""
    out = tmp_path_factory.mktemp("audit") / "data"
    shutil.copytree(data_dir, out)
    train = pd.read_csv(out / "train.csv", dtype={"Text": str}, keep_default_na=False)
    rows = train.index[train["Label"] == 1][:FLIPPED]
    train.loc[rows, "Label"] = 0
    train.to_csv(out / "train.csv", index=False)
    return out, {str(i + 1) for i in rows}


def test_planted_label_errors_are_found_far_above_chance(tiny_run, planted):
    data, flipped = planted
    r = audit(tiny_run, data, AuditOptions(progress=False))
    assert r.audited == sum(r.by_source.values()) and set(r.by_source) == {"train", "validation"}
    assert list(r.issues.columns) == ["rank", "source", "where", "label", "suggested", "p_label", "text"]
    assert list(r.issues["rank"]) == list(range(1, len(r.issues) + 1))
    assert (r.issues["label"] != r.issues["suggested"]).all()  # each flag says what it should be
    found = set(r.issues.loc[r.issues["source"] == "train", "where"]) & flipped
    # even the tiny random-weight model's frozen features (a random projection of the tokens) find most of them,
    # and a flagged message is many times likelier than chance to be one of the planted errors
    assert len(found) >= FLIPPED // 2
    assert len(found) / len(r.issues) >= 3 * FLIPPED / r.audited
    again = audit(tiny_run, data, AuditOptions(progress=False))
    pd.testing.assert_frame_equal(again.issues, r.issues)  # seeded folds: the same flags every time


def test_corrections_are_audited_with_the_data_and_the_cli_writes_the_csv(tiny_run, planted, tmp_path, capsys):
    data, _ = planted
    store = PredictionStore.open(f"sqlite:///{tmp_path / 'p.sqlite'}")
    spam = pd.read_csv(data / "test.csv", dtype={"Text": str}, keep_default_na=False)
    texts = spam.loc[spam["Label"] == 1, "Text"].tolist()[:3]
    records = [PredictionRecord(run_id="r", source="serve", text=t, text_sha256=str(i), label="spam",
                                decision="block", scores={"ham": 0.1, "spam": 0.9}, positive_score=0.9,
                                threshold=0.5, review_threshold=0.5, latency_ms=1.0, truncated=False)
               for i, t in enumerate(texts)]
    store.insert(records)
    for rec in records:  # an operator "corrects" three spam to ham: the audit should doubt them
        store.add_feedback(rec.id, "ham", source="admin")
    out = tmp_path / "audit.csv"
    url = f"sqlite:///{tmp_path / 'p.sqlite'}"
    assert main(["audit", str(tiny_run), "--data-dir", str(data), "--db", url, "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "likely label errors among" in said and "correction" in said
    rows = list(csv.DictReader(out.open()))
    assert rows and list(rows[0]) == ["rank", "source", "where", "label", "suggested", "p_label", "text"]
    flagged = {r["where"] for r in rows if r["source"] == "correction"}
    assert flagged and flagged <= {rec.id for rec in records}
    kept = store.audit()  # the findings are in the store for /admin
    assert [(f["rank"], f["source"], f["location"]) for f in kept] == [
        (int(r["rank"]), r["source"], r["where"]) for r in rows]
    assert {f["feedback_label"] for f in kept if f["source"] == "correction"} == {"ham"}
    review_in_the_admin_page(tiny_run, store, flagged)
    out.write_text("keep")
    assert main(["audit", str(tiny_run), "--data-dir", str(data), "--out", str(out)]) == 2
    assert out.read_text() == "keep" and "--overwrite" in capsys.readouterr().err
    assert main(["audit", str(tiny_run), "--data-dir", str(data), "--splits", "nope", "--out", str(tmp_path / "x.csv")]
                ) == 2
    assert "--splits nope: no" in capsys.readouterr().err


def test_bad_settings_are_one_clear_error(tiny_run, planted):
    data, _ = planted
    with pytest.raises(ConfigError, match="at least 2"):
        audit(tiny_run, data, AuditOptions(folds=1, progress=False))
    with pytest.raises(DataError, match="too few messages per label"):
        audit(tiny_run, data, AuditOptions(splits=("validation",), folds=100, progress=False))
    with pytest.raises(DataError, match="labels the run does not have: eggs"):
        audit(tiny_run, data, AuditOptions(progress=False), [{"id": "x", "text": "hello", "label": "eggs"}])


def review_in_the_admin_page(run, store, flagged: set[str]) -> None:
    """/admin lists the audit's findings; "mark spam" on a flagged correction relabels it (headless chromium)."""
    from playwright.sync_api import sync_playwright

    from spamtune.inference import TextClassifier
    from spamtune.serving import ServeOptions, create_app
    from tests.conftest import running
    from tests.helpers import launch_chromium
    from tests.serving.test_production import ARTIFACTS

    app = create_app(TextClassifier.load(run), options=ServeOptions(store=store))
    with running(app) as url, sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.goto(url + "/admin")
        page.wait_for_function("document.body.dataset.ready === '1'", timeout=30_000, polling=100)
        assert page.locator("#audit > tr").count() == len(store.audit())
        row = page.locator("#audit > tr", has_text="correction").first
        button = row.locator("button", has_text="mark spam")
        assert button.count() == 1
        button.click()
        page.wait_for_function("document.querySelector('#audit tr.corrected') !== null", polling=100)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "admin_audit.png"), full_page=True)
        browser.close()
    relabelled = [c for c in store.corrections() if c["id"] in flagged and c["label"] == "spam"]
    assert len(relabelled) == 1 and relabelled[0]["source"] == "admin"
