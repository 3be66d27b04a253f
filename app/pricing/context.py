"""What the prices page and its JSON twin show, built once for both.

The Structs declare the JSON's shape: each (vendor, item, field) with the
value in force and the overrides behind it, as stored.
"""

from __future__ import annotations

import time

import msgspec

from app.pricing.tables import price_table
from app.store import Store


class StoredOverride(msgspec.Struct):
    """An override as stored, from the settings (file or env) or the prices page."""

    id: int
    vendor: str
    item: str
    field: str
    value: float
    effective_from: str  # YYYY-MM-DD
    source: str | None  # settings | page
    note: str | None
    created_at: float | None


class PriceInForce(msgspec.Struct):
    vendor: str
    item: str
    field: str
    value: float | None  # None: no price known
    overrides: list[StoredOverride]


class PriceList(msgspec.Struct):
    prices: list[PriceInForce]


async def prices_context(store: Store) -> PriceList:
    """Every price with the value in force now."""
    table = await store.read(price_table, time.time())
    return PriceList(prices=msgspec.convert(table, list[PriceInForce]))
