"""Running it in production, the observing half: every decision recorded, corrections, and reports.

    schema.py     the tables (SQLAlchemy Core); migrations/ holds their Alembic history
    store.py      PredictionStore: SQLite (default, WAL) or PostgreSQL; insert, query, feedback with a merge rule
    lists.py      OperatorLists: the allow / deny entries in the store's database (`spamtune lists`, /admin)
    writer.py     StoreWriter: batched background writes that never block an answer
    charts.py     volume, decisions, scores and latency over time (PNG)
    report.py     `spamtune monitor`: HTML + JSON, drift against the run's reference, alerts
"""
