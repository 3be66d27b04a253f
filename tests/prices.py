"""Token prices as the app's price table has them, for tests to work out expected costs.

Tests read the rows (``app.pricing.tables.price_table``) from the store the app
writes to and do the arithmetic themselves (tokens / 1e6 * USD per million), so a
wrong row or a wrong formula in the app fails them.
"""

from __future__ import annotations

from app.pricing.tables import price_table
from app.store import Store


def mistral_rates(store: Store, family: str, at: float) -> tuple[float, float]:
    """USD per million (input, output) tokens of a Mistral model family at ``at``."""
    rows = {
        r["field"]: r["value"]
        for r in store.read_sync(price_table, at)
        if r["vendor"] == "mistral" and r["item"] == family
    }
    return rows["input_per_m"], rows["output_per_m"]
