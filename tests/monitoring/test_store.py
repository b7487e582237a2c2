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
    assert store.revision() == "0002"
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
    store = PredictionStore.open(store_url)  # opening upgrades: 0001 -> 0002
    assert store.revision() == "0002"
    row = store.get("a1")
    assert row["text"] == "an old message" and row["shadow_of"] is None and store.count() == 1
    assert "shadow_of" in {c["name"] for c in sqlalchemy.inspect(store.engine).get_columns("predictions")}


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
    with pytest.raises(FeedbackConflict, match="already corrected to 'ham'"):
        store.add_feedback(rid, "spam")
    assert store.add_feedback(rid, "spam", replace=True)["status"] == "replaced"
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
