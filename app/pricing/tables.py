"""Dated price tables for everything a run pays for: tokens and beyond.

Each price is a row ``(vendor, item, field, value, effective_from)``. The
built-in rows below are the published list prices on their dates; overrides
live in the ``price_overrides`` table (loaded from the settings' prices file
at start, or added on the prices page) and win over built-ins. For a call on
day D the latest override with ``effective_from <= D`` applies, else the
latest such built-in; a call older than every row uses the oldest row, the
best estimate there is.

ElevenLabs bills text-to-speech in credits per character, by model, and a
credit's dollar price depends on the plan: both are rows here, so the plan
price is one override away (``ELEVENLABS_USD_PER_CREDIT``).

``price_event`` is called on the writer thread for each event that carries
a cost (LLM calls, tool calls with cost lines) before it is stored. An LLM
call whose provider reported no usage (tokens null) is unpriced with the
``cost_reason`` "no usage reported", never $0.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import yaml
from sqlite_utils import Database

from app.pricing.bodies import PriceOverride
from app.pricing.costs import (
    FREE,
    MISTRAL_PRICES,
    NO_USAGE,
    PRICED,
    PRICES_AS_OF,
    UNPRICED,
    merge_status,
    mistral_family,
)


@dataclass(frozen=True)
class Price:
    vendor: str
    item: str
    field: str
    value: float
    effective_from: str  # YYYY-MM-DD


FIELDS = {
    "mistral": ("input_per_m", "output_per_m"),
    "elevenlabs": ("credits_per_char", "usd_per_credit"),
}

# ElevenLabs: Multilingual v2 / v3 cost 1 credit per character, Flash and
# Turbo half that; a credit costs $0.22 per 1,000 on the Creator plan.
_ELEVENLABS_AS_OF = "2025-01-01"
ELEVENLABS_CREDITS_PER_CHAR = {
    "eleven_v3": 1.0,
    "eleven_multilingual_v2": 1.0,
    "eleven_multilingual_v1": 1.0,
    "eleven_monolingual_v1": 1.0,
    "eleven_flash_v2_5": 0.5,
    "eleven_flash_v2": 0.5,
    "eleven_turbo_v2_5": 0.5,
    "eleven_turbo_v2": 0.5,
}
ELEVENLABS_USD_PER_CREDIT = 0.00022

BUILTIN: tuple[Price, ...] = (
    *(
        Price("mistral", family, field, value, PRICES_AS_OF)
        for family, (inp, out) in MISTRAL_PRICES.items()
        for field, value in (("input_per_m", inp), ("output_per_m", out))
    ),
    *(
        Price("elevenlabs", model, "credits_per_char", credits, _ELEVENLABS_AS_OF)
        for model, credits in ELEVENLABS_CREDITS_PER_CHAR.items()
    ),
    Price("elevenlabs", "credit", "usd_per_credit", ELEVENLABS_USD_PER_CREDIT, _ELEVENLABS_AS_OF),
)


class PriceError(ValueError):
    """A price override that cannot be used."""


def day_of(at: float) -> str:
    return dt.datetime.fromtimestamp(at, tz=dt.UTC).strftime("%Y-%m-%d")


def _pick(rows: list[tuple[str, float]], day: str) -> float | None:
    """The value of the latest row on or before ``day``, else of the oldest row."""
    if not rows:
        return None
    rows = sorted(rows)
    current = [value for start, value in rows if start <= day]
    return current[-1] if current else rows[0][1]


def lookup(
    db: Database | None,
    vendor: str,
    item: str,
    field: str,
    at: float,
    memo: dict[Any, float | None] | None = None,
) -> float | None:
    """The price in force at ``at`` (Unix seconds): overrides first, then built-ins.

    ``memo``: answers already looked up in the same write (a batch of ingested
    calls asks for the same few prices again and again), by day.
    """
    if memo is not None:
        key = (vendor, item, field, int(at // 86400))
        if key not in memo:
            memo[key] = lookup(db, vendor, item, field, at)
        return memo[key]
    day = day_of(at)
    overrides: list[tuple[str, float]] = []
    if db is not None:
        overrides = [
            (r[0], float(r[1]))
            for r in db.execute(
                "select effective_from, value from price_overrides"
                " where vendor = ? and item = ? and field = ? order by effective_from, id",
                [vendor, item, field],
            ).fetchall()
        ]
    builtin = sorted(
        (p.effective_from, p.value)
        for p in BUILTIN
        if (p.vendor, p.item, p.field) == (vendor, item, field)
    )
    for rows in (overrides, builtin):
        current = [value for start, value in rows if start <= day]
        if current:
            return current[-1]
    return _pick(overrides + builtin, day)


def llm_call_cost(
    db: Database | None,
    provider: str,
    model: str,
    input_tokens: int | None,
    output_tokens: int | None,
    at: float,
    memo: dict[Any, float | None] | None = None,
) -> tuple[float | None, str]:
    """USD and cost status of one model call; unknown tokens (None) are never priced."""
    if provider == "local":
        return 0.0, FREE
    if input_tokens is None or output_tokens is None or provider != "mistral":
        return None, UNPRICED
    family = mistral_family(model)
    inp = lookup(db, "mistral", family, "input_per_m", at, memo)
    out = lookup(db, "mistral", family, "output_per_m", at, memo)
    if inp is None or out is None:
        return None, UNPRICED
    return (input_tokens * inp + output_tokens * out) / 1_000_000, PRICED


def cost_line_price(
    db: Database | None,
    line: dict[str, Any],
    at: float,
    memo: dict[Any, float | None] | None = None,
) -> dict[str, Any] | None:
    """The line with its ``usd`` (and the rates used), or None for a vendor without prices."""
    if line.get("vendor") == "elevenlabs" and line.get("kind", "tts") == "tts":
        model = str(line.get("model") or "eleven_multilingual_v2")
        characters = int(line.get("characters") or 0)
        per_char = lookup(db, "elevenlabs", model, "credits_per_char", at, memo)
        per_credit = lookup(db, "elevenlabs", "credit", "usd_per_credit", at, memo)
        if per_char is None or per_credit is None:
            return {**line, "usd": None, "status": UNPRICED}
        credits = characters * per_char
        return {
            **line,
            "credits": credits,
            "usd_per_credit": per_credit,
            "usd": credits * per_credit,
            "status": PRICED,
        }
    return None


def price_event(
    db: Database | None, event: dict[str, Any], memo: dict[Any, float | None] | None = None
) -> dict[str, Any]:
    """Add ``cost_usd``/``cost_status`` to an LLM call or a tool call with cost lines.

    ``memo``: prices already looked up in the same write (``lookup``).
    """
    at = float(event["at"])
    if event["type"] == "llm_call_finished":
        tokens = (event.get("input_tokens"), event.get("output_tokens"))
        usd, status = llm_call_cost(db, event["provider"], event["model"], *tokens, at, memo)
        call = {**event, "cost_usd": usd, "cost_status": status}
        if status == UNPRICED and None in tokens:
            call["cost_reason"] = NO_USAGE
        return call
    if event["type"] == "tool_call_finished" and event.get("cost_lines"):
        lines, total = [], 0.0
        cost_status: str | None = None  # of the lines seen so far; None before the first
        for line in event["cost_lines"]:
            priced = cost_line_price(db, dict(line), at, memo)
            # A vendor with no table keeps its line as reported; the cost is unknown.
            lines.append(priced if priced is not None else dict(line))
            line_status = priced["status"] if priced is not None else UNPRICED
            cost_status = merge_status(cost_status, line_status)
            total += (priced or {}).get("usd") or 0.0
        usd = total if cost_status in (PRICED, "partial") else None
        return {**event, "cost_lines": lines, "cost_usd": usd, "cost_status": cost_status}
    return event


# --- overrides -----------------------------------------------------------------


def parse_override(row: Mapping[str, Any]) -> PriceOverride:
    """A row of the prices file (or any mapping) as a PriceOverride, or a PriceError."""
    try:
        return msgspec.convert(row, PriceOverride, strict=False)
    except msgspec.ValidationError as exc:
        raise PriceError(str(exc)) from None


def _clean(override: PriceOverride) -> dict[str, Any]:
    """The row to store: the vendor and field must mean a price we use."""
    vendor = override.vendor.strip().lower()
    field = override.field.strip()
    if vendor not in FIELDS:
        raise PriceError(f"vendor must be one of {', '.join(FIELDS)}")
    if field not in FIELDS[vendor]:
        raise PriceError(f"field for {vendor} must be one of {', '.join(FIELDS[vendor])}")
    if not math.isfinite(override.value):
        raise PriceError("value must be a finite number of at least 0")
    item = override.item.strip()
    return {
        "vendor": vendor,
        "item": mistral_family(item) if vendor == "mistral" else item,
        "field": field,
        "value": override.value,
        "effective_from": override.effective_from.isoformat(),
        "note": (override.note or "")[:200],
    }


def add_override(
    db: Database, row: PriceOverride | Mapping[str, Any], source: str, at: float
) -> dict[str, Any]:
    override = row if isinstance(row, PriceOverride) else parse_override(row)
    clean = {**_clean(override), "source": source, "created_at": at}
    pk = db.table("price_overrides").insert(clean).last_pk
    return dict(db.execute("select * from price_overrides where id = ?", [pk]).fetchone())


def load_settings_overrides(
    db: Database, path: Path | None, usd_per_credit: float | None, at: float
) -> int:
    """Replace the overrides that came from settings with the current file and env.

    The file is YAML: a list of ``{vendor, item, field, value, effective_from?, note?}``.
    """
    rows: list[dict[str, Any]] = []
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or []
        except (OSError, yaml.YAMLError) as exc:
            raise PriceError(f"prices file {path}: {exc}") from exc
        if not isinstance(loaded, list):
            raise PriceError(f"prices file {path}: expected a list of prices")
        rows.extend(loaded)
    if usd_per_credit is not None:
        rows.append(
            {
                "vendor": "elevenlabs",
                "item": "credit",
                "field": "usd_per_credit",
                "value": usd_per_credit,
                "note": "ELEVENLABS_USD_PER_CREDIT",
            }
        )
    clean = [_clean(parse_override(r)) for r in rows]
    db.execute("delete from price_overrides where source = 'settings'")
    for row in clean:
        db.table("price_overrides").insert({**row, "source": "settings", "created_at": at})
    return len(clean)


def price_table(db: Database, at: float) -> list[dict[str, Any]]:
    """Every (vendor, item, field) with the value in force at ``at`` and where it came from."""
    keys = {(p.vendor, p.item, p.field) for p in BUILTIN}
    overrides = db.execute("select * from price_overrides order by effective_from, id").fetchall()
    keys |= {(r["vendor"], r["item"], r["field"]) for r in overrides}
    by_key: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in overrides:
        by_key.setdefault((r["vendor"], r["item"], r["field"]), []).append(dict(r))
    table = []
    for key in sorted(keys):
        value = lookup(db, *key, at)
        table.append(
            {
                "vendor": key[0],
                "item": key[1],
                "field": key[2],
                "value": value,
                "overrides": by_key.get(key, []),
            }
        )
    return table
