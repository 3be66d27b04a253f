"""Versioned schema migrations, applied in order on start.

Each module ``mNNNN_name.py`` in this package holds migrations decorated with
``@migration("NNNN_name")``; modules load in name order and applied names
are recorded in ``_migrations`` so each runs once. Add a new module for new
tables; never edit a migration that has shipped.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from collections.abc import Callable

from sqlite_utils import Database

MigrationFn = Callable[[Database], None]
MIGRATIONS: list[tuple[str, MigrationFn]] = []


def migration(name: str) -> Callable[[MigrationFn], MigrationFn]:
    def register(fn: MigrationFn) -> MigrationFn:
        MIGRATIONS.append((name, fn))
        return fn

    return register


def _load_modules() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("m"):
            importlib.import_module(f"{__name__}.{info.name}")


def apply_migrations(db: Database) -> list[str]:
    """Apply every migration not yet recorded; return the names applied now."""
    db.table("_migrations").create(
        {"name": str, "applied_at": float}, pk="name", if_not_exists=True
    )
    done = {row["name"] for row in db.table("_migrations").rows}
    applied = []
    for name, fn in sorted(MIGRATIONS, key=lambda item: item[0]):
        if name in done:
            continue
        with db.atomic():
            fn(db)
            db.table("_migrations").insert({"name": name, "applied_at": time.time()})
        applied.append(name)
    return applied


_load_modules()
