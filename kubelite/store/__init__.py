"""State in SQLite: `schema` (tables, version), `store` (the one writer, SQLAlchemy), `reader` (CLI, sqlite3)."""
