"""The prediction store's tables (SQLAlchemy Core). Alembic migrations (migrations/) create and upgrade them;
the definitions here are what the code reads and writes, and what a new migration is written against."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, DateTime, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

# One row per decision: by `spamtune serve` (source "serve", or "shadow") and `spamtune classify --db` ("cli",
# "file").
predictions = Table(
    "predictions", metadata,
    Column("id", String(32), primary_key=True),  # uuid4 hex, returned to the client before the row is written
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("source", String(16), nullable=False),
    Column("text", Text, nullable=True),  # NULL with --no-store-text: only the sha256 is kept
    Column("text_sha256", String(64), nullable=False),
    Column("label", String(200), nullable=False),
    Column("decision", String(8), nullable=True),  # allow / review / block (binary runs)
    Column("scores", JSON, nullable=False),  # calibrated probability per label
    Column("positive_score", Float, nullable=True),  # P(label id 1) of binary runs: filters and drift
    Column("threshold", Float, nullable=True),
    Column("review_threshold", Float, nullable=True),
    Column("latency_ms", Float, nullable=False),
    Column("truncated", Boolean, nullable=False),
    # source "shadow": a second model's decision on the request whose answer has this id (never shown to the
    # client; `serve --shadow`); NULL for every answer
    Column("shadow_of", String(32), nullable=True),
    # the decision pipeline's verdicts: [{"check", "label", "score", "reason", "evidence", "final"}, ...] in
    # pipeline order; NULL for decisions recorded before revision 0003
    Column("checks", JSON, nullable=True),
    Column("sender", String(256), nullable=True),  # who sent it, when the client said (revision 0004)
    Index("ix_predictions_created_at", "created_at"),
    Index("ix_predictions_run_id", "run_id"),
    Index("ix_predictions_text_sha256", "text_sha256"),
    Index("ix_predictions_shadow_of", "shadow_of"),
)

# At most one correction per prediction (a later one replaces it only when asked to).
feedback = Table(
    "feedback", metadata,
    Column("prediction_id", String(32), ForeignKey("predictions.id", ondelete="CASCADE"), primary_key=True),
    Column("label", String(200), nullable=False),
    Column("learn", Boolean, nullable=False),  # False: act on it, keep it out of training data (tg-spam's /ban)
    Column("source", String(16), nullable=False),  # api (end users) / cli / admin (operators: trusted)
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Operator lists (inference/lists.py): allow / deny entries for senders, domains and patterns, each with who, when
# and why. A removed entry is kept with who removed it and when (the history), and no longer matches; at most one
# active entry per (action, kind, value).
list_entries = Table(
    "list_entries", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("action", String(8), nullable=False),  # allow / deny
    Column("kind", String(8), nullable=False),  # sender / domain / pattern
    Column("value", String(1000), nullable=False),  # normalised (a pattern as given)
    Column("reason", Text, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("removed_at", DateTime(timezone=True), nullable=True),
    Column("removed_by", String(64), nullable=True),
)
ACTIVE_ENTRY = list_entries.c.removed_at.is_(None)
Index("ux_list_entries_active", list_entries.c.action, list_entries.c.kind, list_entries.c.value, unique=True,
      sqlite_where=ACTIVE_ENTRY, postgresql_where=ACTIVE_ENTRY)

# The latest `spamtune audit --db`'s findings (likely label errors), shown in /admin for review; each audit replaces
# the previous one's rows.
audit_findings = Table(
    "audit_findings", metadata,
    Column("rank", Integer, primary_key=True, autoincrement=False),  # 1 = the likeliest error
    Column("audited_at", DateTime(timezone=True), nullable=False),
    Column("run_id", String(64), nullable=False),  # whose frozen layers gave the features
    Column("source", String(32), nullable=False),  # a split's name, or "correction"
    Column("location", String(64), nullable=False),  # the split's data row (from 1), or the prediction id
    Column("label", String(200), nullable=False),  # as given
    Column("suggested", String(200), nullable=False),
    Column("p_label", Float, nullable=False),  # out-of-fold probability of the given label
    Column("text", Text, nullable=False),
)
