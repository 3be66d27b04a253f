"""A price override, one msgspec Struct for the prices page's form and the settings' prices file.

Types and ranges are checked here; what a field means (which vendors there
are, which fields a vendor has, a Mistral model's family) is the price
table's business (``app.pricing.tables``).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec

Item = Annotated[
    str,
    msgspec.Meta(
        min_length=1, max_length=100, pattern=r"\S", description="a model, model family or credit"
    ),
]
Value = Annotated[float, msgspec.Meta(ge=0)]


class PriceOverride(msgspec.Struct, kw_only=True):
    """A price that wins over the built-in one from ``effective_from`` on."""

    vendor: str  # mistral | elevenlabs
    item: Item
    field: str  # input_per_m | output_per_m | credits_per_char | usd_per_credit
    value: Value
    effective_from: dt.date = dt.date(1970, 1, 1)
    note: str | None = None
