"""Model cost arithmetic: families, prices, unpriced models, status merging, display."""

from __future__ import annotations

import pytest

from app.pricing.costs import (
    FREE,
    MISTRAL_PRICES,
    PARTIAL,
    PRICED,
    UNPRICED,
    Cost,
    format_cost,
    llm_cost,
    merge_status,
    mistral_family,
)


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


def test_priced_cost_arithmetic():
    # mistral-large: $2 in / $6 out per million tokens
    cost = llm_cost("mistral", "mistral-large-latest", 1_000_000, 1_000_000)
    assert cost == Cost(8.0, PRICED)
    cost = llm_cost("mistral", "mistral-small-2503", 1000, 500)
    assert cost.status == PRICED
    assert cost.usd == pytest.approx((1000 * 0.1 + 500 * 0.3) / 1_000_000)
    # ministral-3b: $0.04 both ways
    assert llm_cost("mistral", "ministral-3b-latest", 250, 750).usd == pytest.approx(
        1000 * 0.04 / 1_000_000
    )


def test_priced_zero_tokens_is_a_real_zero():
    cost = llm_cost("mistral", "mistral-small-latest", 0, 0)
    assert cost == Cost(0.0, PRICED)


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("mistral", "mistral-tiny-9999-not-in-table"),
        ("mistral", "ft:open-mistral-7b:abc:20240514:def"),  # no price for that base
        ("openai", "mistral-small-latest"),  # only the mistral provider uses the table
        ("", "mistral-large-latest"),
    ],
)
def test_unknown_models_are_unpriced_never_zero(provider, model):
    cost = llm_cost(provider, model, 1234, 567)
    assert cost.status == UNPRICED
    assert cost.usd is None


def test_local_models_are_free():
    assert llm_cost("local", "smollm2-135m", 10_000, 10_000) == Cost(0.0, FREE)
    # Even a local model that happens to share a Mistral name costs nothing.
    assert llm_cost("local", "mistral-large-latest", 10_000, 10_000) == Cost(0.0, FREE)


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
        (1.5, PRICED, "$1.5000"),
        (0.004, PARTIAL, "≥ $0.004 (partly unpriced)"),
        (0.05, PARTIAL, "≥ $0.0500 (partly unpriced)"),
        (None, PARTIAL, "≥ $0 (partly unpriced)"),
    ],
)
def test_format_cost(usd, status, text):
    assert format_cost(usd, status) == text


def test_format_cost_never_shows_bare_zero_for_unknown_prices():
    for status in (UNPRICED, PARTIAL):
        assert format_cost(0.0, status) != "$0"
        assert format_cost(None, status) != "$0"
