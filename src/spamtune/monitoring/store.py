"""The prediction store: every decision and every correction, in SQLite (the embedded default) or PostgreSQL,
through SQLAlchemy 2. The schema is versioned with Alembic and upgraded in place when a store is opened.

    store = PredictionStore.open("sqlite:///predictions.sqlite")    # or postgresql+psycopg://user@host/db
    store.insert([record, ...]); store.add_feedback(id, "ham", learn=True); store.query(...)

SQLite runs in WAL mode with a busy timeout, so `serve` and `classify --db` can share a file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import logging
import os
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, and_, case, create_engine, event, func, select, tuple_, update
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError

from spamtune.config import CONFIDENT
from spamtune.errors import ConfigError, DataError, SpamtuneError
from spamtune.monitoring.schema import audit_findings, feedback, predictions

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


def needs_review(source: str, label: str, predicted: str, confidence: float, confident: float = CONFIDENT) -> bool:
    """An end user's correction against a prediction at least `confident` sure: the shape of poisoning. Neither a
    retrain nor the memory of corrections acts on it until an operator confirms it."""
    return source not in TRUSTED_SOURCES and label != predicted and confidence >= confident


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
    checks: list[dict[str, Any]] | None = None  # the decision pipeline's verdicts, in order
    sender: str | None = None  # who sent it, when the client said

    @classmethod
    def of(cls, decision: Any, text: str, run_id: str, source: str, latency_ms: float, store_text: bool = True,
           positive_label: str | None = None, id: str | None = None,
           shadow_of: str | None = None, sender: str | None = None) -> PredictionRecord:
        """From an inference `Decision` and its message."""
        record = cls(run_id=run_id, source=source, text=text if store_text else None,
                     text_sha256=text_sha256(text), label=decision.label, decision=decision.band,
                     scores=decision.scores,
                     positive_score=decision.scores.get(positive_label) if positive_label else None,
                     threshold=decision.threshold, review_threshold=decision.review_threshold, latency_ms=latency_ms,
                     truncated=decision.truncated, shadow_of=shadow_of, sender=sender,
                     checks=[dataclasses.asdict(v) for v in decision.checks])
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
        db = engine.url.database if engine.dialect.name == "sqlite" else None
        self.path = Path(db) if db and db != ":memory:" else None  # a SQLite file: its identity is watched
        self._identity: tuple[int, int] | None = None

    def check_file(self) -> None:
        """A SQLite store's file must still be the one opened: deleted or replaced while open, writes would go to
        an unlinked file and be lost at the next restart, so they are refused (a `StoreError`: "not recorded")."""
        if self.path is None:
            return
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._identity is None:  # not created yet: the first connection creates it
                return
            raise StoreError(f"the prediction store {self.path} was deleted while open") from None
        identity = (st.st_dev, st.st_ino)
        if self._identity is None:
            self._identity = identity
        elif identity != self._identity:
            raise StoreError(f"the prediction store {self.path} was replaced while open") from None

    @classmethod
    def open(cls, url: str | None = None, upgrade: bool = True, read_only: bool = False,
             must_exist: bool = False) -> PredictionStore:
        """Connect (creating a SQLite file's directory) and bring the schema to the newest revision.

        Args:
            read_only: for readers (monitor, retrain): never upgrade or switch the journal mode (a read-only file
                can be read); a store at an older revision is an error that says how to upgrade it.
            must_exist: a store that is not there (a mistyped --db) is an error, not a new empty store.
        """
        url = url or default_url()
        shown = display_url(url)
        sqlite_file = url.startswith("sqlite:///") and url != "sqlite:///:memory:"
        path = Path(url.removeprefix("sqlite:///")) if sqlite_file else None
        if path is not None and (must_exist or read_only) and not path.is_file():
            raise ConfigError(f"--db {shown}: no prediction store there (mistyped? `spamtune serve` or `classify "
                              "--db` create one)")
        try:
            if path is not None and not read_only:
                path.parent.mkdir(parents=True, exist_ok=True)
            if path is not None and read_only:  # SQLite's read-only URI: no write, no journal switch
                engine = create_engine("sqlite://", creator=lambda: _sqlite_read_only(path), pool_pre_ping=True)
            else:
                engine = create_engine(url, pool_pre_ping=True)
        except ImportError as e:
            raise ConfigError(f"--db {shown}: its database driver is not installed ({e.name}; PostgreSQL: pip "
                              "install 'spamtune[postgres]' and use postgresql+psycopg://)") from None
        except (ArgumentError, NoSuchModuleError, ValueError) as e:
            raise ConfigError(f"--db {shown}: not a database URL SQLAlchemy can use "
                              f"({_without_password(str(e), url)})") from None
        except OSError as e:
            raise ConfigError(f"--db {shown}: cannot create its directory ({e.strerror})") from None
        if engine.dialect.name == "sqlite" and not read_only:
            event.listen(engine, "connect", _sqlite_pragmas)
        store = cls(engine)
        if path is not None:
            store.path = path
        if upgrade and not read_only:
            store.upgrade()
        if read_only or must_exist:
            store.require_current()
        store.check_file()  # remembers which file it is
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

    def require_current(self) -> None:
        """The schema must be there and at this spamtune's revision (readers do not upgrade)."""
        from alembic.script import ScriptDirectory

        head = ScriptDirectory(str(Path(__file__).with_name("migrations"))).get_current_head()
        try:
            revision = self.revision()
        except SQLAlchemyError as e:
            raise StoreError(f"cannot open the prediction store {self.url}: {_reason(e)}") from None
        if revision is None:
            raise ConfigError(f"--db {self.url}: not a spamtune prediction store (no schema)")
        if revision != head:
            raise ConfigError(f"--db {self.url}: the store is at schema revision {revision}, this spamtune reads "
                              f"{head}; open it once with a writable spamtune (serve, feedback) to upgrade it")

    def revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    # -- writes --------------------------------------------------------------------------------------------------

    def insert(self, records: Sequence[PredictionRecord]) -> None:
        """One transaction for the whole batch: all rows are written or none."""
        if not records:
            return
        self.check_file()
        try:
            with self.engine.begin() as conn:
                conn.execute(predictions.insert(), [asdict(r) for r in records])
        except SQLAlchemyError as e:  # the database's reason only: SQLAlchemy's message would carry the texts
            raise StoreError(f"cannot write to the prediction store {self.url}: {_reason(e)}") from None

    def check_writable(self) -> None:
        """Take and release the write lock once (within the busy timeout): a store another process holds locked,
        or a read-only one, is an error before any work is done."""
        try:
            with self.engine.begin() as conn:  # a no-op write: it needs the lock a real one would
                conn.exec_driver_sql("UPDATE alembic_version SET version_num = version_num")
        except SQLAlchemyError as e:
            raise StoreError(f"cannot write to the prediction store {self.url}: {_reason(e)}") from None

    def add_feedback(self, prediction_id: str, label: str, learn: bool = True, source: str = "api",
                     replace: bool = False) -> dict[str, Any]:
        """Record a correction. The merge rule: the same label again changes nothing ("unchanged"), except that an
        operator repeating an end user's correction marks it reviewed ("confirmed": its source becomes the
        operator's); another label for a prediction that already has one is a `FeedbackConflict` unless `replace`
        ("replaced"), and always when an end user would replace an operator's; an unknown id is
        `UnknownPrediction`. Returns {"status", "previous", "prediction_label"}."""
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
            elif old.source in TRUSTED_SOURCES and source not in TRUSTED_SOURCES:
                raise FeedbackConflict(f"prediction {prediction_id} was corrected by an operator to "
                                       f"{old.label!r}; only an operator can change it")
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

    def _answers(self, run_id: str | None, since: datetime.datetime | None) -> list[Any]:
        conds: list[Any] = [predictions.c.shadow_of.is_(None)]
        if run_id:
            conds.append(predictions.c.run_id == run_id)
        if since is not None:
            conds.append(predictions.c.created_at >= since)
        return conds

    def span(self, run_id: str | None = None, since: datetime.datetime | None = None
             ) -> tuple[datetime.datetime | None, datetime.datetime | None, int]:
        """The first and last answer's time and their number (one aggregate query)."""
        c = predictions.c
        q = select(func.min(c.created_at), func.max(c.created_at), func.count()).where(
            and_(*self._answers(run_id, since)))
        with self.engine.connect() as conn:
            first, last, n = conn.execute(q).one()
        return _utc(first), _utc(last), int(n)

    def iter_all(self, run_id: str | None = None, since: datetime.datetime | None = None, chunk: int = 5000,
                 with_text: bool = True) -> Iterator[dict[str, Any]]:
        """Every matching answer (no shadow decisions) with its correction, oldest first, in chunks read by key
        (each chunk starts after the last one's (created_at, id): no offset to skip, so millions read at a steady
        pace); `with_text=False` never reads the texts (what the charts need)."""
        c = predictions.c
        columns = [col for col in predictions.c if with_text or col.name != "text"]
        j = predictions.outerjoin(feedback, feedback.c.prediction_id == c.id)
        after: tuple[Any, str] | None = None
        while True:
            conds = self._answers(run_id, since)
            if after is not None:
                conds.append(tuple_(c.created_at, c.id) > tuple_(*after))
            q = (select(*columns, feedback.c.label.label("feedback_label"), feedback.c.learn.label("feedback_learn"))
                 .select_from(j).where(and_(*conds)).order_by(c.created_at, c.id).limit(chunk))
            with self.engine.connect() as conn:
                raw = list(conn.execute(q))
            if not raw:
                return
            after = (raw[-1].created_at, raw[-1].id)
            yield from (_row(r._mapping) for r in raw)
            if len(raw) < chunk:
                return

    def recent(self, run_id: str | None = None, since: datetime.datetime | None = None,
               limit: int = 2000) -> list[dict[str, Any]]:
        """The `limit` most recent answers, oldest first: text, positive_score (drift tests read these)."""
        c = predictions.c
        q = (select(c.created_at, c.text, c.positive_score).where(and_(*self._answers(run_id, since)))
             .order_by(c.created_at.desc(), c.id.desc()).limit(limit))
        with self.engine.connect() as conn:
            return [_row(r._mapping) for r in conn.execute(q)][::-1]

    def feedback_revision(self) -> tuple[int, str | None]:
        """(corrections, the latest change's time): moves with every correction recorded, confirmed or replaced
        (the memory of corrections polls it)."""
        with self.engine.connect() as conn:
            count, latest = conn.execute(select(func.count(), func.max(feedback.c.updated_at))).one()
        return int(count), None if latest is None else str(latest)

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

    def shadow_pairs(self, since: datetime.datetime | None = None, limit: int | None = None,
                     disagreeing: bool = False) -> list[dict[str, Any]]:
        """Answers that a shadow model also decided, oldest first (the most recent `limit`; only where the labels
        differ with `disagreeing`): id, created_at, text, the answer's run_id, label, decision and positive_score,
        and the shadow's (shadow_run_id, shadow_label, ...)."""
        a, s = predictions.alias("a"), predictions.alias("s")
        q = (select(a.c.id, a.c.created_at, a.c.text, a.c.run_id, a.c.label, a.c.decision, a.c.positive_score,
                    s.c.run_id.label("shadow_run_id"), s.c.label.label("shadow_label"),
                    s.c.decision.label("shadow_decision"), s.c.positive_score.label("shadow_positive_score"))
             .select_from(a.join(s, s.c.shadow_of == a.c.id)).order_by(a.c.created_at.desc(), a.c.id.desc()))
        if since is not None:
            q = q.where(a.c.created_at >= since)
        if disagreeing:
            q = q.where(a.c.label != s.c.label)
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [_row(r._mapping) for r in conn.execute(q)][::-1]

    def shadow_agreement(self, since: datetime.datetime | None = None) -> list[dict[str, Any]]:
        """Per (answering run, shadow run), aggregated in the database: n, same label, same band."""
        a, s = predictions.alias("a"), predictions.alias("s")
        same_label = func.sum(case((a.c.label == s.c.label, 1), else_=0))
        same_band = func.sum(case((a.c.decision == s.c.decision, 1), (and_(a.c.decision.is_(None),
                                                                             s.c.decision.is_(None)), 1), else_=0))
        q = (select(a.c.run_id, s.c.run_id.label("shadow_run_id"), func.count().label("n"),
                    same_label.label("same_label"), same_band.label("same_band"))
             .select_from(a.join(s, s.c.shadow_of == a.c.id)).group_by(a.c.run_id, s.c.run_id))
        if since is not None:
            q = q.where(a.c.created_at >= since)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def replace_audit(self, run_id: str, findings: Sequence[dict[str, Any]]) -> None:
        """Keep `findings` (rank, source, location, label, suggested, p_label, text) as the latest audit, in one
        transaction: the previous audit's rows go."""
        t = now()
        try:
            with self.engine.begin() as conn:
                conn.execute(audit_findings.delete())
                if findings:
                    conn.execute(audit_findings.insert(), [{**f, "audited_at": t, "run_id": run_id} for f in findings])
        except SQLAlchemyError as e:
            raise StoreError(f"cannot write to the prediction store {self.url}: {_reason(e)}") from None

    def audit(self, limit: int = 200) -> list[dict[str, Any]]:
        """The latest audit's findings, likeliest error first, with the correction's current label where the
        finding is a correction (an operator may have fixed it since)."""
        j = audit_findings.outerjoin(feedback, feedback.c.prediction_id == audit_findings.c.location)
        q = (select(*audit_findings.c, feedback.c.label.label("feedback_label")).select_from(j)
             .order_by(audit_findings.c.rank).limit(limit))
        with self.engine.connect() as conn:
            return [{**dict(r._mapping), "audited_at": _utc(r.audited_at)} for r in conn.execute(q)]

    def close(self) -> None:
        self.engine.dispose()


def _utc(t: Any) -> Any:
    if isinstance(t, str):  # SQLite's min()/max() of a DateTime column come back as text
        t = datetime.datetime.fromisoformat(t)
    if isinstance(t, datetime.datetime) and t.tzinfo is None:  # SQLite keeps no zone: it is UTC
        return t.replace(tzinfo=datetime.UTC)
    return t


def _row(m: Any) -> dict[str, Any]:
    d = dict(m)
    if "created_at" in d:
        d["created_at"] = _utc(d["created_at"])
    return d


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer (serve and classify --db share it)
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def display_url(url: str) -> str:
    """A database URL fit to print: the password hidden, even in one SQLAlchemy cannot parse."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not parseable: hide whatever sits between "user:" and "@"
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _without_password(message: str, url: str) -> str:
    """An error message with the URL's password (if any) masked."""
    from sqlalchemy.engine import make_url

    with contextlib.suppress(Exception):
        if password := make_url(url).password:
            message = message.replace(str(password), "***")
    m = re.search(r"://[^:/@]*:([^@]*)@", url)
    return message.replace(m.group(1), "***") if m and m.group(1) else message


def _sqlite_read_only(path: Path) -> Any:
    import sqlite3

    return sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, check_same_thread=False)


def _reason(e: Exception) -> str:
    return str(getattr(e, "orig", None) or e).splitlines()[0]


def check_label(label: str, names: Sequence[str]) -> None:
    if label not in names:
        raise DataError(f"unknown label {label!r} (the run's labels: {', '.join(names)})")
