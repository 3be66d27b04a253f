"""A run's rows as the studio stored them before migration m0014: the old layout.

Used by the compact-log tests (old rows must migrate and read back) and by
``bench/storage.py`` (the old layout's bytes beside the new).
"""

from __future__ import annotations

from typing import Any

from app.store.rows import encode_json


def old_shape(db: Any, run_id: str, published: list[dict[str, Any]]) -> None:
    """Rewrite a run's rows as the studio stored them before m0014 (one row per event,
    whole payloads, whole snapshots)."""
    db.execute("delete from events where run_id = ?", [run_id])
    for e in published:
        db.execute(
            "insert into events (run_id, seq, type, at, payload) values (?, ?, ?, ?, ?)",
            [run_id, e["seq"], e["type"], e["payload"]["at"], encode_json(e["payload"])],
        )
        if e["type"] == "memory_snapshot":
            db.execute(
                "update memory_snapshots set messages = ?, scratch = ?, kept = null,"
                " scratch_removed = null, refs = null where run_id = ? and seq = ?",
                [
                    encode_json(e["payload"]["messages"]),
                    encode_json(e["payload"]["scratch"]),
                    run_id,
                    e["seq"],
                ],
            )
