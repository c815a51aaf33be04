"""Job store: the JobStore interface and its SQLAlchemy implementation (SQLite, PostgreSQL)."""
