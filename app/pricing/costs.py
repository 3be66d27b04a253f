"""Model list prices, cost statuses and how a cost reads.

Every call is priced through the dated price tables (``app.pricing.tables``),
whose built-in Mistral rows come from ``MISTRAL_PRICES`` below.

Mistral prices are USD per million tokens, input and output, as published on
the date in ``PRICES_AS_OF``. A model missing from the table is *unpriced*:
the run shows that it has an unknown cost instead of a silent $0. So is a
call whose provider reported no usage (tokens unknown): its reason is
``NO_USAGE`` and it reads "unpriced (no usage reported)". Local models cost
nothing and say so (``free``).
"""

from __future__ import annotations

import re
from typing import Any

from app.core.formats import MISSING, format_usd

PRICES_AS_OF = "2026-11-01"

# model family -> (input, output) USD per 1M tokens
MISTRAL_PRICES: dict[str, tuple[float, float]] = {
    "mistral-large": (2.0, 6.0),
    "mistral-medium": (0.4, 2.0),
    "mistral-small": (0.1, 0.3),
    "magistral-medium": (2.0, 5.0),
    "magistral-small": (0.5, 1.5),
    "devstral-medium": (0.4, 2.0),
    "devstral-small": (0.1, 0.3),
    "codestral": (0.3, 0.9),
    "ministral-8b": (0.1, 0.1),
    "ministral-3b": (0.04, 0.04),
    "open-mistral-nemo": (0.15, 0.15),
    "pixtral-large": (2.0, 6.0),
    "pixtral-12b": (0.15, 0.15),
    "mistral-saba": (0.2, 0.6),
}

FREE, PRICED, UNPRICED, PARTIAL = "free", "priced", "unpriced", "partial"
# Why a call is unpriced when its model has a price: the provider sent no token counts.
NO_USAGE = "no usage reported"

_VERSION_SUFFIX = re.compile(r"-(latest|\d{4}|\d{2}-\d{2})$")


def mistral_family(model: str) -> str:
    """``mistral-small-2503`` and ``mistral-small-latest`` are both ``mistral-small``."""
    name = model.strip().lower()
    if name.startswith("ft:"):  # fine-tuned models: ft:open-mistral-7b:xxx:yyy
        name = name.split(":")[1]
    while True:
        stripped = _VERSION_SUFFIX.sub("", name)
        if stripped == name:
            return name
        name = stripped


def merge_status(current: str | None, new: str) -> str:
    """Combine the cost status of a run with that of one more call."""
    if current is None or current == new:
        return new
    statuses = {current, new}
    if UNPRICED in statuses or PARTIAL in statuses:
        return UNPRICED if statuses <= {FREE, UNPRICED} else PARTIAL
    return PRICED  # free + priced


def usage_reason(row: dict[str, Any]) -> str | None:
    """``NO_USAGE`` when a run (or call) row says some usage was not reported, else None."""
    if row.get("usage_unknown_calls") or row.get("cost_reason") == NO_USAGE:
        return NO_USAGE
    return None


def format_cost(usd: float | None, status: str | None, reason: str | None = None) -> str:
    """How a cost reads on a page: never a bare $0 for an unknown price; the amount
    in the money format of ``app.core.formats.format_usd`` ("$1.40", "$0.0045").

    ``reason`` says why a cost is (partly) unknown, e.g. ``NO_USAGE``.
    """
    if status is None:
        return "—"
    if status == FREE:
        return "$0 (local)"
    if status == UNPRICED:
        return f"unpriced ({reason})" if reason else "unpriced"
    # The one money format of the pages and charts; a missing amount of a partly priced run is 0.
    amount = format_usd(usd or 0)
    if amount == MISSING:  # NaN or infinite in a corrupt row
        return amount
    if status == PARTIAL:
        return f"≥ {amount} (partly unpriced{': ' + reason if reason else ''})"
    return amount
