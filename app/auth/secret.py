"""The studio's CSRF secret, the same for every replica.

On SQLite it is a file in the data dir (``Settings.secret``). On PostgreSQL
replicas have data dirs of their own, so the secret lives in the database
(``studio_secrets``, migration 0016): the first replica to start stores one,
every other reads that one back, and a form one replica served is accepted by
any other. A studio moved from SQLite (``agentop copy-db``) keeps its data dir,
so the first start on PostgreSQL stores that ``secret.key``: forms open in a
browser across the switch stay valid.
"""

from __future__ import annotations

import secrets
from typing import Any

from app.core.settings import Settings
from app.store import Store

CSRF = "csrf"


def shared_secret(db: Any, name: str, candidate: str) -> str:
    """The secret ``name`` in the database: ``candidate`` if none was stored before.

    Insert-if-absent then read back, so replicas starting at once agree.
    """
    db.execute(
        "insert into studio_secrets (name, value) values (?, ?) on conflict (name) do nothing",
        [name, candidate],
    )
    return str(db.execute("select value from studio_secrets where name = ?", [name]).fetchone()[0])


def csrf_secret(settings: Settings) -> str:
    """The secret that signs CSRF tokens (see the module docstring)."""
    if not settings.database_url:
        return settings.secret()
    kept = settings.secret_path  # the SQLite studio's, after copy-db
    candidate = kept.read_text().strip() if kept.is_file() else secrets.token_urlsafe(48)
    store = Store(settings.db_path, url=settings.database_url)
    try:
        return str(store.write_sync(shared_secret, CSRF, candidate))
    finally:
        store.close()
