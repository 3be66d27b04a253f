"""Team access: hashed API keys with roles, and browser sessions bound to a key."""

from __future__ import annotations

from sqlite_utils import Database

from app.store.migrations import migration


@migration("0002_auth")
def auth(db: Database) -> None:
    db.table("api_keys").create(
        {
            "id": int,
            "name": str,
            "prefix": str,  # shown in lists so people can tell keys apart
            "key_hash": str,  # sha256 of the key; the key itself is never stored
            "role": str,  # admin | member | viewer
            "created_at": float,
            "last_used_at": float,
            "revoked_at": float,
        },
        pk="id",
        not_null={"name", "key_hash", "role", "created_at"},
    )
    db.table("api_keys").create_index(["key_hash"], unique=True)
    db.table("api_keys").create_index(["name"], unique=True)
    db.table("sessions").create(
        {
            "token_hash": str,
            "key_id": int,
            "created_at": float,
            "expires_at": float,
        },
        pk="token_hash",
        foreign_keys=[("key_id", "api_keys", "id")],
    )
    db.table("sessions").create_index(["key_id"])
