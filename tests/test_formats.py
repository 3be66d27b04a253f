"""One number format: the rules of ``app.core.formats`` on ordinary and odd values, and
the pages that print them (KPIs and charts agree, no scientific notation, zeros are data)."""

from __future__ import annotations

import math
import re
import time

import pytest

from app.core import formats as f
from app.dashboard.charts import Chart
from app.store import Store
from app.store.runs import create_run
from tests.conftest import api_client
from tests.test_evals import soup

ODD = [None, math.nan, math.inf, -math.inf, "12", True, [], 1e308, -1e308, 10**400, 0.00001]
SCIENTIFIC = re.compile(r"\d(\.\d+)?e[+-]?\d", re.IGNORECASE)


@pytest.mark.parametrize(
    "formatter",
    [
        f.format_ms,
        f.format_usd,
        f.format_int,
        f.format_num,
        f.format_pct,
        f.format_ratio,
        f.format_exact,
        f.compact,
    ],
)
@pytest.mark.parametrize("value", ODD, ids=repr)
def test_odd_values_read_short_and_never_scientific(formatter, value):
    text = formatter(value)
    assert isinstance(text, str) and 0 < len(text) <= 14, text
    assert not SCIENTIFIC.search(text), text


@pytest.mark.parametrize("value", [None, math.nan, math.inf, -math.inf, "1", True, {}])
def test_missing_and_not_finite_read_as_a_dash(value):
    for formatter in (f.format_ms, f.format_usd, f.format_int, f.format_num, f.format_pct):
        assert formatter(value) == f.MISSING


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0 ms"),
        (0.00001, "< 1 ms"),
        (840, "840 ms"),
        (1290.4, "1.29 s"),  # was "1.29e+03" through '%.3g'
        (59_999, "1 min"),
        (125_000, "2 min 5 s"),
        (3_600_000 * 3.2, "3 h 12 min"),
        (86_400_000 * 4 + 7_200_000, "4 d 2 h"),
        (86_400_000 * 400, "400 d"),
        (-250, "-250 ms"),
        (1e308, "> 999T d"),
    ],
)
def test_durations(ms, text):
    assert f.format_ms(ms) == text


@pytest.mark.parametrize(
    ("usd", "text"),
    [
        (0, "$0"),
        (0.00001, "$0.00001"),
        (1e-9, "< $0.000001"),
        (0.0045, "$0.0045"),
        (0.05, "$0.05"),
        (0.1234, "$0.1234"),
        (1.4, "$1.40"),  # the KPI said "$1.4000", the chart "$1.40"
        (1234.5, "$1,234.50"),
        (-1.4, "-$1.40"),
        (2.5e12, "$2.5T"),
        (1e308, "> $999T"),
        (-1e308, "< -$999T"),
    ],
)
def test_money(usd, text):
    assert f.format_usd(usd) == text


@pytest.mark.parametrize(
    ("value", "count", "plain", "short"),
    [
        (0, "0", "0", "0"),
        (7, "7", "7", "7"),
        (0.8333, "1", "0.833", "0.833"),
        (12.345, "12", "12.3", "12.3"),
        (999.6, "1,000", "1,000", "1k"),
        (1290, "1,290", "1,290", "1.3k"),
        (12_345, "12,345", "12,345", "12k"),
        (999_960, "999,960", "999,960", "1M"),
        (-1290, "-1,290", "-1,290", "-1.3k"),
        (0.00001, "0", "0.00001", "0.00001"),
        (1e-9, "0", "≈ 0", "≈ 0"),
        (3e12, "3T", "3T", "3T"),
        (1e308, "> 999T", "> 999T", "> 999T"),
        (10**400, "> 999T", "> 999T", "> 999T"),
    ],
)
def test_counts_plain_values_and_axis_labels(value, count, plain, short):
    assert (f.format_int(value), f.format_num(value), f.compact(value)) == (count, plain, short)


@pytest.mark.parametrize(
    ("pct", "digits", "text"),
    [
        (0, 0, "0%"),
        (45.4, 0, "45%"),
        (33.333, 1, "33.3%"),
        (50, 1, "50.0%"),  # fixed decimals, as the session pages write a rate
        (100, 0, "100%"),
        (0.2, 0, "< 1%"),
        (0.02, 1, "< 0.1%"),
        (99.97, 1, "> 99.9%"),  # not a rounded 0 that did not happen
        (99.7, 0, "> 99%"),
        (-5, 0, "-5%"),
        (1e308, 0, "> 999T%"),
    ],
)
def test_percentages(pct, digits, text):
    assert f.format_pct(pct, digits) == text
    assert f.format_ratio(pct / 100, digits) == text


def test_metrics_read_in_their_unit_by_name():
    assert f.format_metric(1290.0, "latency_ms") == "1.29 s"
    assert f.format_metric(1.4, "cost_usd") == "$1.40"
    assert f.format_metric(3.6667, "score") == "3.67"
    assert f.format_metric(1.0, "exact_match") == "1"
    assert f.format_metric(None, "score") == f.MISSING


def test_template_filters_are_registered_under_their_names(app):
    env = app.template_engine.engine
    for name in ("ms", "usd", "int", "pct", "ratio", "num", "metric", "run_cost", "ts"):
        assert name in env.filters, name
    template = env.from_string(
        "{{ 1290.4 | ms }}|{{ 1.4 | usd }}|{{ 12345 | int }}|{{ 45 | pct }}|{{ 0.5 | ratio }}"
        "|{{ 0.8333 | num }}|{{ 1290 | metric('latency_ms') }}"
    )
    assert template.render() == "1.29 s|$1.40|12,345|45%|50%|0.833|1.29 s"


# --- charts -------------------------------------------------------------------------------


def test_a_chart_of_zeros_is_data_and_one_without_values_is_empty():
    zeros = Chart("c", "Cost", "line", "usd", ["a", "b"]).add("cost", [0.0, None]).finish()
    assert not zeros["empty"] and zeros["series"][0]["texts"] == ["$0", f.MISSING]
    nothing = Chart("c", "Cost", "bar", "usd", ["a", "b"]).add("cost", [None, None]).finish()
    assert nothing["empty"]
    huge = Chart("c", "Tokens", "bar", "count", ["a"]).add("in", [1e308]).finish()
    assert all(not SCIENTIFIC.search(t["text"]) for t in huge["ticks"])


# --- pages --------------------------------------------------------------------------------


def _run(store: Store, run_id: str, **fields) -> None:
    store.write_sync(
        create_run,
        {
            "id": run_id,
            "status": "succeeded",
            "prompt": run_id,
            "model": "mistral-small-latest",
            "started_at": time.time() - 60,
            **fields,
        },
    )


def _evaluation(store: Store, run_id: str, metric: str, value: float) -> None:
    def add(db):
        db["evaluations"].insert(
            {
                "run_id": run_id,
                "metric": metric,
                "value": value,
                "source": "api",
                "created_at": time.time() - 30,
            }
        )

    store.write_sync(add)


def test_kpis_and_charts_write_cost_and_latency_alike(settings, keys):
    store = Store(settings.db_path)
    _run(store, "r1", latency_ms=1290.4, cost_usd=1.4, cost_status="priced", input_tokens=12345)
    store.close()
    with api_client(settings, keys["viewer"]) as client:
        page = soup(client.get("/"))
    kpis = {
        k.select_one(".label").text: k.select_one(".value").text for k in page.select("#kpis .kpi")
    }
    assert kpis["Cost"] == "$1.40" and kpis["Avg latency"] == "1.29 s"
    cost = page.select_one("#chart-cost")
    assert cost.select_one(".chart-total").text == "$1.40 in range"
    assert "$1.40" in [td.text for td in cost.select(".chart-data td.num")]
    latency = page.select_one("#chart-latency")
    assert "1.29 s" in [td.text for td in latency.select(".chart-data td.num")]
    assert "12,345" in [td.text for td in page.select("#chart-tokens .chart-data td.num")]
    assert not SCIENTIFIC.search(page.text)


def test_a_chart_whose_values_are_zero_does_not_say_no_data(settings, keys):
    with api_client(settings, keys["viewer"]) as client:
        empty = soup(client.get("/"))
    # No run at all: every chart says so.
    assert len(empty.select("#dashboard-charts .chart-empty")) == 4
    store = Store(settings.db_path)
    _run(store, "free", latency_ms=0, cost_usd=0.0, cost_status="free", input_tokens=0)
    _evaluation(store, "free", "latency_ms", 0.0)
    store.close()
    with api_client(settings, keys["viewer"]) as client:
        page = soup(client.get("/"))
        evals = soup(client.get("/evals"))
    for chart in ("cost", "tokens", "latency"):
        figure = page.select_one(f"#chart-{chart}")
        assert figure.select_one(".chart-empty") is None, chart
        assert "no data" not in figure.select_one("svg")["aria-label"], chart
    assert page.select_one("#chart-latency circle.dot")  # the 0 ms point is drawn
    assert page.select_one("#chart-cost rect.bar-zero")  # and the $0 bucket has its hairline
    [metric] = [fig for fig in evals.select("figure.chart") if "latency_ms" in fig.text]
    assert metric.select_one(".chart-empty") is None and metric.select_one("circle.dot")


def test_huge_and_odd_values_read_short_on_the_eval_pages(settings, keys):
    store = Store(settings.db_path)
    _run(store, "big", latency_ms=1e308, cost_usd=1e308, cost_status="priced")
    _evaluation(store, "big", "latency_ms", 1290.0)
    _evaluation(store, "big", "score", 1e308)
    _evaluation(store, "big", "tiny", 0.00001)
    store.close()
    with api_client(settings, keys["viewer"]) as client:
        evals = soup(client.get("/evals"))
        run = soup(client.get("/runs/big"))
    row = evals.select_one("#by-model tbody tr")
    cells = [td.text.strip() for td in row.select("td.num")]
    # runs, latency_ms, score, tiny (sorted metrics), avg latency, cost
    assert cells == ["1", "1.29 s", "> 999T", "0.00001", "> 999T d", "> $999T"]
    assert not SCIENTIFIC.search(evals.text)
    results = [td.text.strip() for td in run.select("#run-evals td.eval-result")]
    assert set(results) == {"1.29 s", "> 999T", "0.00001"}
    assert not SCIENTIFIC.search(run.select_one("#run-evals").text)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.00001, "0.00001"),
        (2.5, "2.5"),
        (0.15, "0.15"),
        (1200, "1,200"),
        (0, "0"),
        (1e-9, "≈ 0"),
        (-0.25, "-0.25"),
        (None, "—"),
    ],
)
def test_exact_values_keep_their_digits_without_an_exponent(value, text):
    """Prices are shown as set ('%g' printed 1e-05)."""
    assert f.format_exact(value) == text
