"""Model cost arithmetic: families, prices, unpriced models, status merging, display."""

from __future__ import annotations

import pytest

from app.pricing.costs import (
    FREE,
    MISTRAL_PRICES,
    PARTIAL,
    PRICED,
    UNPRICED,
    format_cost,
    merge_status,
    mistral_family,
)
from app.pricing.tables import llm_call_cost
from tests.prices import mistral_rates

pytestmark = pytest.mark.both_backends

AT = 1_800_000_000.0  # a call's time: prices are looked up on its day


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("mistral-small-latest", "mistral-small"),
        ("mistral-small-2503", "mistral-small"),
        ("mistral-large-2411", "mistral-large"),
        ("ministral-8b-2410", "ministral-8b"),
        ("ministral-3b-latest", "ministral-3b"),
        ("codestral-25-01", "codestral"),
        ("mistral-medium-2505-latest", "mistral-medium"),  # suffixes stack
        ("  Mistral-Large-Latest ", "mistral-large"),  # case and whitespace
        ("pixtral-12b", "pixtral-12b"),  # a size is not a version
        ("open-mistral-nemo", "open-mistral-nemo"),
        ("ft:open-mistral-7b:587a6b29:20240514:7e773925", "open-mistral-7b"),
        ("ft:mistral-small-latest:abc:20250101:def", "mistral-small"),
        ("some-unknown-model", "some-unknown-model"),
    ],
)
def test_mistral_family(model, family):
    assert mistral_family(model) == family


def test_every_price_is_positive_input_and_output():
    for family, (inp, out) in MISTRAL_PRICES.items():
        assert mistral_family(family) == family, family  # table keys are families
        assert inp > 0 and out > 0, family


def test_priced_cost_arithmetic(db):
    # The table carries the published list price: mistral-large, $2 in / $6 out per million.
    assert mistral_rates(db, "mistral-large", AT) == (2.0, 6.0)
    cost = db.read_sync(llm_call_cost, "mistral", "mistral-large-latest", 1_000_000, 1_000_000, AT)
    assert cost == (pytest.approx(1_000_000 / 1e6 * 2.0 + 1_000_000 / 1e6 * 6.0), PRICED)
    usd_in, usd_out = mistral_rates(db, "mistral-small", AT)
    cost = db.read_sync(llm_call_cost, "mistral", "mistral-small-2503", 1000, 500, AT)
    assert cost == (pytest.approx(1000 / 1e6 * usd_in + 500 / 1e6 * usd_out), PRICED)
    usd_in, usd_out = mistral_rates(db, "ministral-3b", AT)
    cost = db.read_sync(llm_call_cost, "mistral", "ministral-3b-latest", 250, 750, AT)
    assert cost == (pytest.approx(250 / 1e6 * usd_in + 750 / 1e6 * usd_out), PRICED)


def test_priced_zero_tokens_is_a_real_zero(db):
    assert db.read_sync(llm_call_cost, "mistral", "mistral-small-latest", 0, 0, AT) == (0.0, PRICED)


@pytest.mark.parametrize(
    ("provider", "model", "tokens"),
    [
        ("mistral", "mistral-tiny-9999-not-in-table", (1234, 567)),
        ("mistral", "ft:open-mistral-7b:abc:20240514:def", (1234, 567)),  # no price for that base
        ("openai", "mistral-small-latest", (1234, 567)),  # only the mistral provider uses the table
        ("", "mistral-large-latest", (1234, 567)),
        ("mistral", "mistral-small-latest", (None, 567)),  # unknown usage is never $0
        ("mistral", "mistral-small-latest", (1234, None)),
    ],
)
def test_unknown_models_are_unpriced_never_zero(db, provider, model, tokens):
    assert db.read_sync(llm_call_cost, provider, model, *tokens, AT) == (None, UNPRICED)


def test_local_models_are_free(db):
    assert db.read_sync(llm_call_cost, "local", "smollm2-135m", 10_000, 10_000, AT) == (0.0, FREE)
    # Even a local model that happens to share a Mistral name costs nothing.
    local = db.read_sync(llm_call_cost, "local", "mistral-large-latest", 10_000, 10_000, AT)
    assert local == (0.0, FREE)


@pytest.mark.parametrize(
    ("current", "new", "merged"),
    [
        (None, FREE, FREE),
        (None, PRICED, PRICED),
        (None, UNPRICED, UNPRICED),
        (FREE, FREE, FREE),
        (PRICED, PRICED, PRICED),
        (UNPRICED, UNPRICED, UNPRICED),
        (FREE, PRICED, PRICED),
        (PRICED, FREE, PRICED),
        (FREE, UNPRICED, UNPRICED),
        (UNPRICED, FREE, UNPRICED),
        (PRICED, UNPRICED, PARTIAL),
        (UNPRICED, PRICED, PARTIAL),
        (PARTIAL, FREE, PARTIAL),
        (PARTIAL, PRICED, PARTIAL),
        (PARTIAL, UNPRICED, PARTIAL),
        (PARTIAL, PARTIAL, PARTIAL),
    ],
)
def test_merge_status(current, new, merged):
    assert merge_status(current, new) == merged


def test_merge_status_is_order_independent_over_a_sequence():
    calls = [FREE, PRICED, UNPRICED, FREE]
    for order in (calls, list(reversed(calls)), [UNPRICED, FREE, FREE, PRICED]):
        status = None
        for s in order:
            status = merge_status(status, s)
        assert status == PARTIAL


@pytest.mark.parametrize(
    ("usd", "status", "text"),
    [
        (None, None, "—"),
        (0.0, None, "—"),
        (0.0, FREE, "$0 (local)"),
        (None, FREE, "$0 (local)"),
        (None, UNPRICED, "unpriced"),
        (0.0, UNPRICED, "unpriced"),  # a stored 0 for an unpriced run is not "$0"
        (0.0, PRICED, "$0"),
        (0.000123, PRICED, "$0.000123"),
        (0.0001, PRICED, "$0.0001"),
        (0.0045, PRICED, "$0.0045"),
        (0.0123, PRICED, "$0.0123"),
        (1.5, PRICED, "$1.50"),  # as the cost chart writes it
        (1.4, PRICED, "$1.40"),
        (1234.5, PRICED, "$1,234.50"),
        (1e308, PRICED, "> $999T"),
        (float("nan"), PRICED, "—"),
        (0.004, PARTIAL, "≥ $0.004 (partly unpriced)"),
        (0.05, PARTIAL, "≥ $0.05 (partly unpriced)"),
        (None, PARTIAL, "≥ $0 (partly unpriced)"),
    ],
)
def test_format_cost(usd, status, text):
    assert format_cost(usd, status) == text


def test_format_cost_never_shows_bare_zero_for_unknown_prices():
    for status in (UNPRICED, PARTIAL):
        assert format_cost(0.0, status) != "$0"
        assert format_cost(None, status) != "$0"
