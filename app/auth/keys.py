"""API keys: created with a role, stored only as a SHA-256 hash, shown once.

Keys are 256-bit random tokens, so a fast hash is the right tool here (a slow
password hash would only add latency to every request without adding
safety). Revocation is a column, checked on every lookup, so it takes effect
at once.

The last active admin key can be neither revoked nor demoted: without one,
nobody could manage keys any more (the team would be locked out). Expired
login sessions are deleted whenever someone logs in and at start.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

from sqlite_utils import Database

ROLES = ("viewer", "member", "admin")
KEY_PREFIX = "ao_"
# The first characters of a key, kept in clear: they tell keys apart in lists,
# and failed logins are counted per prefix tried.
PREFIX_CHARS = len(KEY_PREFIX) + 8
SESSION_DAYS = 14


class KeyError_(ValueError):
    """A key operation that cannot be done (duplicate name, unknown role or key)."""


class LastAdminError(KeyError_):
    """Refused: the change would leave no active admin key."""


def key_prefix(secret: str) -> str:
    return secret[:PREFIX_CHARS]


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
            "prefix": key_prefix(secret),
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


def _key_named(db: Database, name: str) -> dict[str, Any]:
    row = db.execute("select * from api_keys where name = ?", [name]).fetchone()
    if row is None:
        raise KeyError_(f"no key named {name!r}")
    return dict(row)


def _keep_an_admin(db: Database, row: dict[str, Any], doing: str) -> None:
    """Raise LastAdminError if ``row`` is the only active admin key."""
    if row["role"] != "admin" or row["revoked_at"] is not None:
        return
    admins = db.execute(
        "select count(*) from api_keys where role = 'admin' and revoked_at is null"
    ).fetchone()[0]
    if admins <= 1:
        raise LastAdminError(
            f"cannot {doing} {row['name']!r}: it is the last active admin key, and without one"
            " nobody could manage keys. Create another admin key first."
        )


def revoke_key(db: Database, name: str) -> dict[str, Any]:
    """Revoke a key at once (its sessions end too); never the last active admin key."""
    row = _key_named(db, name)
    _keep_an_admin(db, row, "revoke")
    if row["revoked_at"] is None:
        db.execute("update api_keys set revoked_at = ? where id = ?", [time.time(), row["id"]])
        db.execute("delete from sessions where key_id = ?", [row["id"]])
    return _public(db.execute("select * from api_keys where id = ?", [row["id"]]).fetchone())


def set_role(db: Database, name: str, role: str) -> dict[str, Any]:
    """Change an active key's role; never demote the last active admin key."""
    if role not in ROLES:
        raise KeyError_(f"role must be one of {', '.join(ROLES)}")
    row = _key_named(db, name)
    if row["revoked_at"] is not None:
        raise KeyError_(f"key {name!r} is revoked")
    if role != "admin":
        _keep_an_admin(db, row, "demote")
    db.execute("update api_keys set role = ? where id = ?", [role, row["id"]])
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


def purge_expired_sessions(db: Database, now: float) -> int:
    """Delete login sessions past their expiry; return how many went."""
    return db.execute("delete from sessions where expires_at <= ?", [now]).rowcount


def create_session(db: Database, key_id: int) -> str:
    token = secrets.token_urlsafe(32)
    now = time.time()
    purge_expired_sessions(db, now)  # each login clears what earlier ones left to expire
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
