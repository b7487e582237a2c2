"""The prediction store: every decision and every correction, in SQLite (the embedded default) or PostgreSQL,
through SQLAlchemy 2. The schema is versioned with Alembic and upgraded in place when a store is opened.

    store = PredictionStore.open("sqlite:///predictions.sqlite")    # or postgresql+psycopg://user@host/db
    store.insert([record, ...]); store.add_feedback(id, "ham", learn=True); store.query(...)

SQLite runs in WAL mode with a busy timeout, so `serve` and `classify --db` can share a file.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, and_, create_engine, event, func, select, update
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError

from spamtune.errors import ConfigError, DataError, SpamtuneError
from spamtune.monitoring.schema import feedback, predictions

log = logging.getLogger(__name__)


class StoreError(SpamtuneError):
    """The prediction store cannot be reached or written (the service degrades to "not recorded")."""


class FeedbackConflict(SpamtuneError):
    """A correction for a prediction that already has a different one (pass replace to change it)."""


class UnknownPrediction(SpamtuneError):
    """No prediction has this id."""


def default_url() -> str:
    """`sqlite:///$XDG_DATA_HOME/spamtune/predictions.sqlite` (~/.local/share/... by default)."""
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "spamtune"
    return f"sqlite:///{base / 'predictions.sqlite'}"


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def new_id() -> str:
    return uuid.uuid4().hex


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# Corrections from these sources were made by an operator (the admin page, the CLI on the store): trusted. End
# users' corrections (POST /feedback: "api") are checked before a retrain learns them (lifecycle.corrections).
TRUSTED_SOURCES = ("admin", "cli")


@dataclass
class PredictionRecord:
    """One decision as the store keeps it."""

    run_id: str
    source: str  # serve / cli / file
    text: str | None  # None when only the hash is kept
    text_sha256: str
    label: str
    decision: str | None
    scores: dict[str, float]
    positive_score: float | None
    threshold: float | None
    review_threshold: float | None
    latency_ms: float
    truncated: bool
    id: str = field(default_factory=new_id)
    created_at: datetime.datetime = field(default_factory=now)
    shadow_of: str | None = None  # a shadow model's record: the id of the answer it shadows


    @classmethod
    def of(cls, decision: Any, text: str, run_id: str, source: str, latency_ms: float, store_text: bool = True,
           positive_label: str | None = None, id: str | None = None,
           shadow_of: str | None = None) -> PredictionRecord:
        """From an inference `Decision` and its message."""
        record = cls(run_id=run_id, source=source, text=text if store_text else None,
                     text_sha256=text_sha256(text), label=decision.label, decision=decision.decision,
                     scores=decision.scores,
                     positive_score=decision.scores.get(positive_label) if positive_label else None,
                     threshold=decision.threshold, review_threshold=decision.review_threshold, latency_ms=latency_ms,
                     truncated=decision.truncated, shadow_of=shadow_of)
        if id is not None:
            record.id = id
        return record


@dataclass
class Query:
    """Filters for `PredictionStore.query` (all optional)."""

    run_id: str | None = None
    decision: str | None = None
    label: str | None = None
    corrected: bool | None = None  # only corrected (True) or uncorrected (False) predictions
    min_score: float | None = None  # on positive_score
    max_score: float | None = None
    text: str | None = None  # a substring of the message
    since: datetime.datetime | None = None
    limit: int = 50
    offset: int = 0


class PredictionStore:
    """Typed access to the store's two tables; see the module docstring."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.url = engine.url.render_as_string(hide_password=True)

    @classmethod
    def open(cls, url: str | None = None, upgrade: bool = True) -> PredictionStore:
        """Connect (creating a SQLite file's directory) and bring the schema to the newest revision."""
        url = url or default_url()
        try:
            if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
                Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, pool_pre_ping=True)
        except (ArgumentError, NoSuchModuleError, ValueError) as e:
            raise ConfigError(f"--db {url!r}: not a database URL SQLAlchemy can use ({e})") from None
        except OSError as e:
            raise ConfigError(f"--db {url!r}: cannot create its directory ({e.strerror})") from None
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        store = cls(engine)
        if upgrade:
            store.upgrade()
        return store

    def upgrade(self) -> None:
        """Alembic `upgrade head` on this database: creates the tables, or migrates an older schema in place."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
        try:
            with self.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except SQLAlchemyError as e:
            raise StoreError(f"cannot open the prediction store {self.url}: {_reason(e)}") from None

    def revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    # -- writes --------------------------------------------------------------------------------------------------

    def insert(self, records: Sequence[PredictionRecord]) -> None:
        """One transaction for the whole batch: all rows are written or none."""
        if not records:
            return
        with self.engine.begin() as conn:
            conn.execute(predictions.insert(), [asdict(r) for r in records])

    def add_feedback(self, prediction_id: str, label: str, learn: bool = True, source: str = "api",
                     replace: bool = False) -> dict[str, Any]:
        """Record a correction. The merge rule: the same label again changes nothing ("unchanged"), except that an
        operator repeating an end user's correction marks it reviewed ("confirmed": its source becomes the
        operator's); another label for a prediction that already has one is a `FeedbackConflict` unless `replace`
        ("replaced"); an unknown id is `UnknownPrediction`. Returns {"status", "previous", "prediction_label"}."""
        with self.engine.begin() as conn:
            pred = conn.execute(select(predictions.c.label).where(predictions.c.id == prediction_id,
                                                                  predictions.c.shadow_of.is_(None))).first()
            if pred is None:
                raise UnknownPrediction(f"no prediction has the id {prediction_id!r}")
            old = conn.execute(select(feedback.c.label, feedback.c.learn, feedback.c.source)
                               .where(feedback.c.prediction_id == prediction_id)).first()
            t = now()
            if old is None:
                try:
                    conn.execute(feedback.insert().values(prediction_id=prediction_id, label=label, learn=learn,
                                                          source=source, created_at=t, updated_at=t))
                except IntegrityError:  # a concurrent correction won the race: report it as a conflict
                    raise FeedbackConflict(f"prediction {prediction_id} was corrected at the same time") from None
                status = "recorded"
            elif old.label == label and old.learn == learn:
                status = "unchanged"
                if source in TRUSTED_SOURCES and old.source not in TRUSTED_SOURCES:
                    conn.execute(update(feedback).where(feedback.c.prediction_id == prediction_id)
                                 .values(source=source, updated_at=t))
                    status = "confirmed"
            elif not replace:
                raise FeedbackConflict(f"prediction {prediction_id} was already corrected to {old.label!r}; "
                                       "replace it explicitly (--replace, or \"replace\": true over HTTP)")
            else:
                conn.execute(update(feedback).where(feedback.c.prediction_id == prediction_id)
                             .values(label=label, learn=learn, source=source, updated_at=t))
                status = "replaced"
        return {"status": status, "previous": None if old is None else old.label, "prediction_label": pred.label}

    # -- reads ---------------------------------------------------------------------------------------------------

    def count(self, run_id: str | None = None) -> int:
        """Answers recorded (shadow decisions not counted)."""
        q = select(func.count()).select_from(predictions).where(predictions.c.shadow_of.is_(None))
        if run_id:
            q = q.where(predictions.c.run_id == run_id)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def get(self, prediction_id: str) -> dict[str, Any] | None:
        rows = self._select(predictions.c.id == prediction_id, limit=1)
        return rows[0] if rows else None

    def query(self, q: Query) -> list[dict[str, Any]]:
        """Answers, newest first, with the correction (if any) as `feedback_label` / `feedback_learn`."""
        c, f = predictions.c, feedback.c
        conds: list[Any] = [c.shadow_of.is_(None)]
        if q.run_id:
            conds.append(c.run_id == q.run_id)
        if q.decision:
            conds.append(c.decision == q.decision)
        if q.label:
            conds.append(c.label == q.label)
        if q.min_score is not None:
            conds.append(c.positive_score >= q.min_score)
        if q.max_score is not None:
            conds.append(c.positive_score <= q.max_score)
        if q.text:
            conds.append(c.text.contains(q.text, autoescape=True))
        if q.since is not None:
            conds.append(c.created_at >= q.since)
        if q.corrected is not None:
            conds.append(f.label.is_not(None) if q.corrected else f.label.is_(None))
        return self._select(and_(*conds), q.limit, q.offset)

    def _select(self, where: Any, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        j = predictions.outerjoin(feedback, feedback.c.prediction_id == predictions.c.id)
        q = select(*predictions.c, feedback.c.label.label("feedback_label"),
                   feedback.c.learn.label("feedback_learn")).select_from(j)
        if where is not None:
            q = q.where(where)
        q = q.order_by(predictions.c.created_at.desc(), predictions.c.id).offset(offset)
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [_row(r._mapping) for r in conn.execute(q)]

    def iter_all(self, run_id: str | None = None, since: datetime.datetime | None = None,
                 chunk: int = 5000) -> Iterator[dict[str, Any]]:
        """Every matching answer (no shadow decisions), oldest first, in chunks (the monitor reads millions this
        way)."""
        offset = 0
        while True:
            conds: list[Any] = [predictions.c.shadow_of.is_(None)]
            if run_id:
                conds.append(predictions.c.run_id == run_id)
            if since is not None:
                conds.append(predictions.c.created_at >= since)
            j = predictions.outerjoin(feedback, feedback.c.prediction_id == predictions.c.id)
            q = (select(*predictions.c, feedback.c.label.label("feedback_label"),
                        feedback.c.learn.label("feedback_learn")).select_from(j)
                 .where(and_(*conds)).order_by(predictions.c.created_at, predictions.c.id)
                 .offset(offset).limit(chunk))
            with self.engine.connect() as conn:
                rows = [_row(r._mapping) for r in conn.execute(q)]
            yield from rows
            if len(rows) < chunk:
                return
            offset += chunk

    def corrections(self, learnable_only: bool = False) -> list[dict[str, Any]]:
        """Corrected predictions (with their text when stored), oldest correction first: id, text, text_sha256,
        run_id, predicted (label), scores, label (the correction), learn, source, updated_at."""
        j = predictions.join(feedback, feedback.c.prediction_id == predictions.c.id)
        q = select(predictions.c.id, predictions.c.text, predictions.c.text_sha256, predictions.c.run_id,
                   predictions.c.label.label("predicted"), predictions.c.scores, feedback.c.label, feedback.c.learn,
                   feedback.c.source, feedback.c.updated_at).select_from(j)
        if learnable_only:
            q = q.where(feedback.c.learn.is_(True))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q.order_by(feedback.c.updated_at))]

    def shadow_pairs(self, since: datetime.datetime | None = None) -> list[dict[str, Any]]:
        """Each answer that a shadow model also decided, oldest first: id, created_at, text, the answer's run_id,
        label, decision and positive_score, and the shadow's (shadow_run_id, shadow_label, ...)."""
        a, s = predictions.alias("a"), predictions.alias("s")
        q = (select(a.c.id, a.c.created_at, a.c.text, a.c.run_id, a.c.label, a.c.decision, a.c.positive_score,
                    s.c.run_id.label("shadow_run_id"), s.c.label.label("shadow_label"),
                    s.c.decision.label("shadow_decision"), s.c.positive_score.label("shadow_positive_score"))
             .select_from(a.join(s, s.c.shadow_of == a.c.id)).order_by(a.c.created_at, a.c.id))
        if since is not None:
            q = q.where(a.c.created_at >= since)
        with self.engine.connect() as conn:
            return [_row(r._mapping) for r in conn.execute(q)]

    def close(self) -> None:
        self.engine.dispose()


def _row(m: Any) -> dict[str, Any]:
    d = dict(m)
    created = d.get("created_at")
    if isinstance(created, datetime.datetime) and created.tzinfo is None:  # SQLite keeps no zone: it is UTC
        d["created_at"] = created.replace(tzinfo=datetime.UTC)
    return d


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer (serve and classify --db share it)
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _reason(e: Exception) -> str:
    return str(getattr(e, "orig", None) or e).splitlines()[0]


def check_label(label: str, names: Sequence[str]) -> None:
    if label not in names:
        raise DataError(f"unknown label {label!r} (the run's labels: {', '.join(names)})")
