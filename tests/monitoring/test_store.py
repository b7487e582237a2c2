"""The prediction store, the same tests on SQLite and on a real PostgreSQL: schema migrations, writes, queries,
the feedback merge rule, background writes and what happens when the database is gone."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import sqlalchemy

from spamtune.monitoring import store as store_module
from spamtune.monitoring.store import (
    FeedbackConflict,
    PredictionRecord,
    PredictionStore,
    Query,
    StoreError,
    UnknownPrediction,
)
from spamtune.monitoring.writer import StoreWriter


def record(i: int, label: str = "ham", decision: str = "allow", p: float = 0.1, **kw) -> PredictionRecord:
    base = dict(run_id="run-a", source="serve", text=f"message {i}", text_sha256=f"{i:064x}", label=label,
                decision=decision, scores={"ham": 1 - p, "spam": p}, positive_score=p, threshold=0.9,
                review_threshold=0.5, latency_ms=12.5, truncated=False)
    return PredictionRecord(**{**base, **kw})


def test_schema_is_created_and_upgrading_again_changes_nothing(store_url):
    store = PredictionStore.open(store_url)
    assert store.revision() == "0005"
    tables = set(sqlalchemy.inspect(store.engine).get_table_names())
    assert {"predictions", "feedback", "alembic_version"} <= tables
    store.insert([record(1)])
    PredictionStore.open(store_url).upgrade()  # a second open upgrades in place: data kept
    assert PredictionStore.open(store_url).count() == 1


def test_a_first_schema_store_is_migrated_in_place_with_its_rows(store_url):
    from alembic import command
    from alembic.config import Config

    old = PredictionStore.open(store_url, upgrade=False)
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(store_module.__file__).with_name("migrations")))
    with old.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(sqlalchemy.text(
            "INSERT INTO predictions (id, created_at, run_id, source, text, text_sha256, label, decision, scores, "
            "positive_score, threshold, review_threshold, latency_ms, truncated) VALUES ('a1', :t, 'run-old', "
            "'serve', 'an old message', 'h', 'ham', 'allow', '{\"ham\": 0.9, \"spam\": 0.1}', 0.1, 0.5, 0.2, "
            "3.0, false)"), {"t": datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)})
    assert old.revision() == "0001"
    store = PredictionStore.open(store_url)  # opening upgrades: 0001 -> ... -> 0005
    assert store.revision() == "0005"
    row = store.get("a1")
    assert row["text"] == "an old message" and row["shadow_of"] is None and store.count() == 1
    assert row["checks"] is None  # decided before the pipeline recorded its checks
    columns = {c["name"] for c in sqlalchemy.inspect(store.engine).get_columns("predictions")}
    assert {"shadow_of", "checks", "sender"} <= columns


def test_each_decision_keeps_its_checks(store_url):
    checks = [{"check": "model", "label": "spam", "score": 0.97, "reason": "fine-tuned smollm2-135m: P(spam) 0.970",
               "evidence": {"words": [["WINNER", 0.41], ["£900", 0.12]]}, "final": False},
              {"check": "ngrams", "label": "spam", "score": 1.25, "reason": "n-gram SVM: margin +1.250",
               "evidence": {}, "final": False}]
    store = PredictionStore.open(store_url)
    store.insert([record(1, checks=checks), record(2)])
    assert store.get(record(1).id) is None  # ids are fresh per record
    (one,) = store.query(Query(text="message 1"))
    assert one["checks"] == checks
    (two,) = store.query(Query(text="message 2"))
    assert two["checks"] is None


def test_shadow_decisions_are_kept_apart_from_answers(store_url):
    store = PredictionStore.open(store_url)
    answers = [record(i, label="ham", p=0.1) for i in range(3)]
    shadows = [record(i, run_id="run-b", source="shadow", label="spam" if i == 0 else "ham", decision="block"
                      if i == 0 else "allow", p=0.9 if i == 0 else 0.2, shadow_of=a.id)
               for i, a in enumerate(answers)]
    store.insert(answers + shadows)
    assert store.count() == 3 and len(store.query(Query(limit=100))) == 3 and len(list(store.iter_all())) == 3
    pairs = store.shadow_pairs()
    assert [p["id"] for p in pairs] == [a.id for a in answers]
    assert [(p["label"], p["shadow_label"], p["shadow_run_id"]) for p in pairs] == [
        ("ham", "spam", "run-b"), ("ham", "ham", "run-b"), ("ham", "ham", "run-b")]
    with pytest.raises(UnknownPrediction):  # nobody saw a shadow decision: it cannot be corrected
        store.add_feedback(shadows[0].id, "ham")


def test_insert_query_and_filters(store_url):
    store = PredictionStore.open(store_url)
    t0 = datetime.datetime(2026, 11, 20, 12, tzinfo=datetime.UTC)
    rows = [record(i, label="spam" if i % 3 == 0 else "ham", decision="block" if i % 3 == 0 else "allow",
                   p=0.95 if i % 3 == 0 else 0.05, created_at=t0 + datetime.timedelta(minutes=i),
                   text=f"message {i}" + (" WIN cash" if i % 3 == 0 else "")) for i in range(30)]
    rows[5].text = None  # --no-store-text
    store.insert(rows)
    assert store.count() == 30 and store.count("run-b") == 0
    newest = store.query(Query(limit=5))
    assert [r["id"] for r in newest] == [r.id for r in rows[::-1][:5]]
    assert newest[0]["created_at"] == rows[-1].created_at and newest[0]["scores"] == {"ham": 0.95, "spam": 0.05}
    assert {r["decision"] for r in store.query(Query(decision="block", limit=100))} == {"block"}
    assert len(store.query(Query(decision="block", limit=100))) == 10
    assert len(store.query(Query(min_score=0.5, limit=100))) == 10
    assert len(store.query(Query(text="WIN cash", limit=100))) == 10
    assert len(store.query(Query(text="100%_", limit=100))) == 0  # LIKE wildcards are escaped
    assert len(store.query(Query(since=t0 + datetime.timedelta(minutes=25), limit=100))) == 5
    assert store.get(rows[5].id)["text"] is None and store.get("0" * 32) is None
    assert [r["id"] for r in store.iter_all(chunk=7)] == [r.id for r in rows]  # oldest first, every row


def test_feedback_merge_rule(store_url):
    store = PredictionStore.open(store_url)
    store.insert([record(1, label="spam", decision="block", p=0.97), record(2)])
    rid = store.query(Query(label="spam"))[0]["id"]
    assert store.add_feedback(rid, "ham") == {"status": "recorded", "previous": None, "prediction_label": "spam"}
    assert store.add_feedback(rid, "ham")["status"] == "unchanged"
    assert store.add_feedback(rid, "ham", source="cli")["status"] == "confirmed"  # an operator repeats it
    assert store.add_feedback(rid, "ham", source="api")["status"] == "unchanged"  # and it stays confirmed
    assert store.corrections()[0]["source"] == "cli"
    with pytest.raises(FeedbackConflict, match="corrected by an operator"):
        store.add_feedback(rid, "spam")
    with pytest.raises(FeedbackConflict, match="only an operator can change it"):  # an end user never replaces it
        store.add_feedback(rid, "spam", replace=True)
    with pytest.raises(FeedbackConflict, match="already corrected to 'ham'"):
        store.add_feedback(rid, "spam", source="admin")
    assert store.add_feedback(rid, "spam", source="admin", replace=True)["status"] == "replaced"
    with pytest.raises(UnknownPrediction):
        store.add_feedback("f" * 32, "ham")
    row = store.get(rid)
    assert row["feedback_label"] == "spam" and row["feedback_learn"] is True
    assert [r["id"] for r in store.query(Query(corrected=True))] == [rid]
    assert rid not in [r["id"] for r in store.query(Query(corrected=False))]
    other = store.query(Query(corrected=False))[0]["id"]
    store.add_feedback(other, "spam", learn=False)
    assert [c["id"] for c in store.corrections(learnable_only=True)] == [rid]
    assert {c["id"] for c in store.corrections()} == {rid, other}


def test_the_writer_batches_in_the_background(store_url):
    store = PredictionStore.open(store_url)
    written = []
    writer = StoreWriter(store, batch=50, interval=0.05, on_written=written.append)
    records = [record(i) for i in range(240)]
    assert all(writer.submit(r) for r in records)
    assert writer.flush(10)
    assert store.count() == 240 and writer.written == 240 and sum(written) == 240 and max(written) <= 50
    writer.close()


def test_a_database_that_is_gone_costs_records_not_answers(tmp_path, caplog):
    """PostgreSQL on a port nobody listens on: every batch fails, is counted and logged; submit never raises."""
    from tests.conftest import free_port

    engine = sqlalchemy.create_engine(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none",
                                      connect_args={"connect_timeout": 2})
    failed = []
    writer = StoreWriter(PredictionStore(engine), interval=0.05, on_failed=failed.append)
    assert all(writer.submit(record(i)) for i in range(20))
    writer.flush(30)
    writer.close()
    assert writer.failed == 20 and writer.written == 0 and sum(failed) == 20
    assert "not recorded" in caplog.text


def test_a_full_queue_drops_and_counts(tmp_path):
    """A database that hangs: the queue fills to its bound, then new records are dropped and counted; once the
    database answers again, what was queued is written."""
    import threading

    store = PredictionStore.open(f"sqlite:///{tmp_path / 'p.sqlite'}")
    gate, real_insert = threading.Event(), store.insert

    def hanging_insert(records):
        gate.wait(30)
        real_insert(records)

    store.insert = hanging_insert
    writer = StoreWriter(store, max_queue=5, batch=2, interval=0.01)
    accepted = sum(writer.submit(record(i)) for i in range(20))
    assert writer.dropped == 20 - accepted and 5 <= accepted <= 7  # the queue's 5, plus what the writer holds
    gate.set()
    assert writer.flush(10) and store.count() == accepted


def test_open_refuses_a_bad_url_in_one_line():
    from spamtune.errors import ConfigError

    with pytest.raises(ConfigError, match="not a database URL"):
        PredictionStore.open("notadb://x")


@pytest.mark.parametrize("url,message", [
    ("postgresql+psycopg://u:S3CRET-PW@127.0.0.1:abc/db", "not a database URL"),  # a bad port
    ("postgresql+nosuch://u:S3CRET-PW@127.0.0.1/db", "not a database URL"),  # a bad driver
    ("postgresql+psycopg2://u:S3CRET-PW@127.0.0.1:5432/db", "driver is not installed"),  # a missing one
    ("mysql+pymysql://u:S3CRET-PW@127.0.0.1/db", "driver is not installed"),
])
def test_a_bad_url_never_prints_its_password(url, message, capsys):
    from spamtune.cli import main

    assert main(["monitor", "--db", url, "--out", "/nonexistent-never-written"]) == 2
    err = capsys.readouterr().err
    assert message in err and "S3CRET" not in err and "***" in err and err.count("\n") == 1, err


def test_readers_refuse_a_store_that_is_not_there_and_write_nothing(tmp_path, capsys):
    from spamtune.cli import main

    missing = tmp_path / "typo" / "predictions.sqlite"
    for argv in (["monitor", "--out", str(tmp_path / "m")], ["feedback", "a" * 32, "ham"]):
        assert main([*argv, "--db", f"sqlite:///{missing}"]) == 2
        assert "no prediction store there" in capsys.readouterr().err
    assert not missing.parent.exists()  # nothing created
    store = PredictionStore.open(f"sqlite:///{tmp_path / 'p.sqlite'}")
    store.insert([record(i) for i in range(3)])
    store.close()
    db = tmp_path / "p.sqlite"
    before = (db.stat().st_mtime_ns, db.read_bytes())
    reader = PredictionStore.open(f"sqlite:///{tmp_path / 'p.sqlite'}", read_only=True)
    assert reader.count() == 3
    with pytest.raises(StoreError, match="readonly"):  # read-only: SQLite refuses a write
        reader.insert([record(9)])
    reader.close()
    assert (db.stat().st_mtime_ns, db.read_bytes()) == before  # not upgraded, not switched, not written


def test_charts_and_monitor_memory_stays_bounded(tmp_path):
    """Texts are never read for the charts, and rows are aggregated as they stream by: 300 messages of 200 kB each
    (60 MB of text) cost the chart a few MB, and the aggregates equal a count by hand."""
    import tracemalloc

    from spamtune.monitoring.charts import Traffic, figure, png

    store = PredictionStore.open(f"sqlite:///{tmp_path / 'big.sqlite'}")
    t0 = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
    big = "x" * 200_000
    rows = [record(i, label="spam" if i % 3 == 0 else "ham", decision="block" if i % 3 == 0 else "allow",
                   p=0.9 if i % 3 == 0 else 0.1, text=big, created_at=t0 + datetime.timedelta(minutes=i),
                   latency_ms=float(1 + i % 50)) for i in range(300)]
    for k in range(0, 300, 50):
        store.insert(rows[k: k + 50])
    png(figure(Traffic(), "volume"))  # matplotlib's first import and font cache, not the data, out of the way
    tracemalloc.start()
    traffic = Traffic.of(store)
    _, peak = tracemalloc.get_traced_memory()
    chart = png(figure(traffic, "volume"))
    _, peak_with_chart = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 2_000_000 and peak_with_chart < 8_000_000, (peak, peak_with_chart)  # the texts: 60 MB
    assert traffic.n == 300 and traffic.decisions == {"block": 100, "allow": 200}
    assert sum(traffic.volume.values()) == 300 and sum(traffic.blocked.values()) == 100
    assert int(traffic.scores.sum()) == 300 and traffic.scores[18] == 100  # P 0.9 -> bin 18 of 20
    p50 = traffic.latency_quantile(0.5)
    assert p50 is not None and 25 <= p50 <= 25 * 1.13  # the true median is 25 ms; one log bin wide
    assert chart[:4] == b"\x89PNG"
    assert [r["id"] for r in store.iter_all(chunk=7, with_text=False)] == [r.id for r in rows]
    assert all("text" not in r for r in store.iter_all(with_text=False))
