"""A one-row table the store writes to while degraded, to learn when it can write again."""

from __future__ import annotations

from sqlite_utils import Database

from app.store.migrations import migration


@migration("0011_storage_probe")
def storage_probe(db: Database) -> None:
    db.table("storage_probe").create({"id": int, "probed_at": float}, pk="id", if_not_exists=True)
