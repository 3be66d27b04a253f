"""API keys: created with a role, stored only as a SHA-256 hash, shown once.

Keys are 256-bit random tokens, so a fast hash is the right tool here (a slow
password hash would only add latency to every request without adding
safety). Revocation is a column, checked on every lookup, so it takes effect
at once.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

from sqlite_utils import Database

ROLES = ("viewer", "member", "admin")
KEY_PREFIX = "ao_"
SESSION_DAYS = 14


class KeyError_(ValueError):
    """A key operation that cannot be done (duplicate name, unknown role or key)."""


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def role_at_least(role: str, needed: str) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in dict(row).items() if k != "key_hash"}


def create_key(db: Database, name: str, role: str) -> tuple[dict[str, Any], str]:
    """Create a key; return its public row and the key itself (the only time it is seen)."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise KeyError_("name is required (at most 100 characters)")
    if role not in ROLES:
        raise KeyError_(f"role must be one of {', '.join(ROLES)}")
    if db.execute("select 1 from api_keys where name = ?", [name]).fetchone():
        raise KeyError_(f"a key named {name!r} already exists")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    db.table("api_keys").insert(
        {
            "name": name,
            "prefix": secret[:11],
            "key_hash": hash_secret(secret),
            "role": role,
            "created_at": time.time(),
        }
    )
    row = db.execute("select * from api_keys where name = ?", [name]).fetchone()
    return _public(row), secret


def list_keys(db: Database) -> list[dict[str, Any]]:
    rows = db.execute("select * from api_keys order by revoked_at is not null, created_at")
    return [_public(r) for r in rows.fetchall()]


def count_active_keys(db: Database) -> int:
    return db.execute("select count(*) from api_keys where revoked_at is null").fetchone()[0]


def revoke_key(db: Database, name: str) -> dict[str, Any]:
    row = db.execute("select * from api_keys where name = ?", [name]).fetchone()
    if row is None:
        raise KeyError_(f"no key named {name!r}")
    if row["revoked_at"] is None:
        db.execute("update api_keys set revoked_at = ? where id = ?", [time.time(), row["id"]])
        db.execute("delete from sessions where key_id = ?", [row["id"]])
    return _public(db.execute("select * from api_keys where id = ?", [row["id"]]).fetchone())


def find_key(db: Database, secret: str) -> dict[str, Any] | None:
    """The active key with this secret, or None."""
    if not secret or len(secret) > 200:
        return None
    row = db.execute(
        "select * from api_keys where key_hash = ? and revoked_at is null", [hash_secret(secret)]
    ).fetchone()
    return _public(row) if row else None


def touch_key(db: Database, key_id: int, at: float) -> None:
    db.execute("update api_keys set last_used_at = ? where id = ?", [at, key_id])


def create_session(db: Database, key_id: int) -> str:
    token = secrets.token_urlsafe(32)
    now = time.time()
    db.table("sessions").insert(
        {
            "token_hash": hash_secret(token),
            "key_id": key_id,
            "created_at": now,
            "expires_at": now + SESSION_DAYS * 86400,
        }
    )
    return token


def find_session(db: Database, token: str) -> dict[str, Any] | None:
    """The key behind a live session, or None (expired, revoked or unknown)."""
    if not token or len(token) > 200:
        return None
    row = db.execute(
        "select k.* from sessions s join api_keys k on k.id = s.key_id"
        " where s.token_hash = ? and s.expires_at > ? and k.revoked_at is null",
        [hash_secret(token), time.time()],
    ).fetchone()
    return _public(row) if row else None


def delete_session(db: Database, token: str) -> None:
    db.execute("delete from sessions where token_hash = ?", [hash_secret(token)])
