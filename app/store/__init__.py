"""SQLite storage: the connection manager, migrations and query functions."""

from app.store.db import Store

__all__ = ["Store"]
