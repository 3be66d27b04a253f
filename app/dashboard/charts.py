"""Time series for the dashboards: runs, tokens, cost, latency, success and metrics.

Only data lives here: buckets, values, a rounded axis maximum with its
ticks, and each value already formatted for labels and tooltips, by the same
rules as every other number on the pages (``app.core.formats``). A bucket
with nothing in it is None, not 0: a chart whose values are all 0 is drawn as
such, and only one with no value at all says "No data in this range". The SVG is
drawn by the ``chart`` macro in ``templates/partials/_charts.html``.
Every figure is read from the per-hour and per-day rollups
(``app.store.rollups``), so a chart costs the same at 1k and 1M runs; latency
percentiles come from the rollups' histograms (within 4.5 %).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlite_utils import Database

from app.core.errors import InputError
from app.core.formats import format_axis, format_value, metric_unit
from app.store import rollups

# range key -> (bucket seconds, bucket count, label format, title)
RANGES: dict[str, tuple[int, int, str, str]] = {
    "24h": (3600, 24, "%H:00", "last 24 hours, hourly"),
    "7d": (86400, 7, "%a %d", "last 7 days, daily"),
    "30d": (86400, 30, "%b %d", "last 30 days, daily"),
    "90d": (7 * 86400, 13, "%b %d", "last 13 weeks, weekly"),
}
DEFAULT_RANGE = "7d"
# For a query parameter that must name one of the ranges (the JSON API).
RANGE_PATTERN = f"^({'|'.join(RANGES)})$"


def checked_range(key: str) -> str:
    """``key`` if it names a range, else an InputError listing them (the pages)."""
    if key not in RANGES:
        raise InputError(f"range must be one of {', '.join(RANGES)}")
    return key


@dataclass(frozen=True)
class Window:
    key: str
    start: float
    size: int
    count: int
    labels: list[str]
    title: str

    def index(self, at: float) -> int | None:
        i = int((at - self.start) // self.size)
        return i if 0 <= i < self.count else None


def window(key: str | None, now: float | None = None) -> Window:
    """Buckets aligned to whole hours/days (UTC) ending with the current one."""
    key = key if key in RANGES else DEFAULT_RANGE
    size, count, fmt, title = RANGES[key]
    now = time.time() if now is None else now
    start = (now // size) * size - (count - 1) * size
    labels = [
        dt.datetime.fromtimestamp(start + i * size, tz=dt.UTC).strftime(fmt) for i in range(count)
    ]
    return Window(key, start, size, count, labels, title)


def nice_step(value: float) -> float:
    """The smallest round step (1, 2, 2.5, 5 × 10^n) at or above ``value``."""
    if not math.isfinite(value) or value <= 0:
        return 1.0  # NaN or inf only come from corrupt rows: any axis beats a broken page
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exp * (1 + 1e-9):
            return step * exp
    return 10 * exp


def nice_axis(top: float, whole: bool = False) -> tuple[float, int]:
    """Axis maximum and tick intervals (3 to 5) with round ticks and the least headroom.

    ``whole``: counts, whose ticks must not fall between integers.
    """
    best: tuple[float, int] | None = None
    for n in (5, 4, 3):
        step = nice_step(top / n)
        if whole:
            step = max(1.0, math.ceil(step))
        if best is None or step * n < best[0]:
            best = (step * n, n)
    return best  # type: ignore[return-value]


@dataclass
class Chart:
    """One chart: ``kind`` bar (stacked) or line; series values align with ``labels``.

    ``unit``: ``count`` (whole numbers), ``value`` (a plain measure), ``ms``, ``usd`` or ``pct``.
    """

    id: str
    title: str
    kind: str
    unit: str
    labels: list[str]
    series: list[dict[str, Any]] = field(default_factory=list)
    y_max: float | None = None  # fixed axis maximum (100 for percentages)
    note: str = ""

    def add(self, name: str, values: Sequence[float | None], css: str | None = None) -> Chart:
        """A series; ``css`` names its colour class (s0…s3 by default, or ok / bad / warn)."""
        self.series.append({"name": name, "values": values, "css": css or f"s{len(self.series)}"})
        return self

    def finish(self) -> dict[str, Any]:
        """The template's view: axis max, ticks and formatted values."""
        if self.kind == "bar":
            top = max(
                (
                    sum(v or 0 for v in col)
                    for col in zip(*(s["values"] for s in self.series), strict=False)
                ),
                default=0,
            )
        else:
            top = max((v for s in self.series for v in s["values"] if v is not None), default=0)
        if self.y_max:
            y_max, intervals = self.y_max, (5 if self.y_max == 5 else 4)
        else:
            y_max, intervals = nice_axis(top, whole=self.unit == "count" and self.kind == "bar")
        for s in self.series:
            s["texts"] = [format_value(v, self.unit) for v in s["values"]]
        totals = [
            sum(v or 0 for v in col)
            for col in zip(*(s["values"] for s in self.series), strict=False)
        ]
        return {
            "id": self.id,
            "title": self.title,
            "kind": self.kind,
            "labels": self.labels,
            "series": self.series,
            "y_max": y_max,
            "ticks": [
                {
                    "value": y_max * i / intervals,
                    "text": format_axis(y_max * i / intervals, self.unit),
                }
                for i in range(intervals + 1)
            ],
            # Zeros are data (a day of free local runs costs $0): only no value at all is empty.
            "empty": all(v is None for s in self.series for v in s["values"]),
            "note": self.note,
            "total_text": format_value(sum(totals), self.unit) if self.kind == "bar" else "",
        }


def dashboard_charts(
    db: Database, range_key: str | None = None, now: float | None = None
) -> dict[str, Any]:
    """Runs, tokens, cost and latency p50/p95 per bucket, for the dashboard (from rollups)."""
    w = window(range_key, now)
    n = w.count
    buckets = rollups.run_buckets(db, w.start, w.size, n)
    histograms = rollups.latency_histograms(db, w.start, w.size, n)

    def column(name: str) -> list[float | None]:
        """A bucket without runs has no value (None), one with runs has its sum, 0 included."""
        return [float(buckets[i][name]) if i in buckets else None for i in range(n)]

    other = [
        float(b["runs"] - b["succeeded"] - b["failed"]) if b else None
        for b in (buckets.get(i) for i in range(n))
    ]
    # Runs with a model call that reported no usage: their tokens are partial.
    usage_unknown = sum(b["usage_unknown"] or 0 for b in buckets.values())

    def latency(q: float) -> list[float | None]:
        return [rollups.histogram_percentile(histograms.get(i, []), q) for i in range(n)]

    charts = [
        Chart("runs", "Runs", "bar", "count", w.labels)
        .add("succeeded", column("succeeded"), "ok")
        .add("failed", column("failed"), "bad")
        .add("running", other, "warn"),
        Chart(
            "tokens",
            "Tokens",
            "bar",
            "count",
            w.labels,
            note=f"reported tokens only: {usage_unknown} run(s) had calls with no usage reported"
            if usage_unknown
            else "",
        )
        .add("input", column("input_tokens"))
        .add("output", column("output_tokens")),
        Chart(
            "cost",
            "Cost (USD)",
            "bar",
            "usd",
            w.labels,
            note="priced calls only: unpriced ones are left out",
        ).add("cost", column("cost_usd"), "s1"),
        Chart("latency", "Latency", "line", "ms", w.labels)
        .add("p50", latency(0.5))
        .add("p95", latency(0.95)),
    ]
    return {"window": w, "ranges": list(RANGES), "charts": [c.finish() for c in charts]}


def eval_charts(
    db: Database,
    range_key: str | None = None,
    model: str | None = None,
    session: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Success rates and each metric's mean over time, optionally for one model or session."""
    w = window(range_key, now)
    n = w.count
    ended, ok = [0] * n, [0] * n
    for i, b in rollups.run_buckets(db, w.start, w.size, n, model, session).items():
        ended[i], ok[i] = b["ended"], b["succeeded"]
    judged, passed = [0] * n, [0] * n
    sums: dict[str, list[float]] = {}
    counts: dict[str, list[int]] = {}
    for e in rollups.eval_buckets(db, w.start, w.size, n, model, session):
        i = e["i"]
        judged[i] += e["judged"]
        passed[i] += e["passed"]
        if e["value_n"]:
            sums.setdefault(e["metric"], [0.0] * n)[i] += e["value_sum"]
            counts.setdefault(e["metric"], [0] * n)[i] += e["value_n"]

    def rate(num: list[int], den: list[int]) -> list[float | None]:
        return [100.0 * a / b if b else None for a, b in zip(num, den, strict=False)]

    success = (
        Chart(
            "success",
            "Success rate",
            "line",
            "pct",
            w.labels,
            y_max=100.0,
            note="runs that succeeded · evaluations with a pass verdict",
        )
        .add("runs succeeded", rate(ok, ended), "ok")
        .add("evaluations passed", rate(passed, judged), "s0")
    )
    metrics: list[dict[str, Any]] = []
    for metric in sorted(sums):
        unit = metric_unit(metric)
        means = [s / c if c else None for s, c in zip(sums[metric], counts[metric], strict=False)]
        # Known scales read better on their full axis: 1-5 scores, 0-1 verdicts.
        known = [v for v in means if v is not None]
        y_max = (
            5.0
            if metric in ("score", "llm_judge")
            else (1.0 if known and all(0 <= v <= 1 for v in known) else None)
        )
        metrics.append(
            Chart(f"metric-{len(metrics)}", metric, "line", unit, w.labels, y_max=y_max)
            .add("mean", means)
            .finish()
        )
    return {"window": w, "ranges": list(RANGES), "success": success.finish(), "metrics": metrics}


def breakdown(
    db: Database, by: str, range_key: str | None = None, now: float | None = None
) -> list[dict[str, Any]]:
    """Per model or per session: runs, success rate, evaluations, pass rate, each metric's mean."""
    w = window(range_key, now)
    groups: dict[str, dict[str, Any]] = {}
    for row in rollups.run_groups(db, by, w.start, w.size, w.count):
        row["success_rate"] = 100.0 * row["ok"] / row["ended"] if row["ended"] else None
        row.update(judged=0, passed=0, pass_rate=None, metrics={})
        groups[row["g"]] = row
    for e in rollups.eval_groups(db, by, w.start, w.size, w.count):
        group = groups.get(e["g"])
        if group is None:
            continue
        group["judged"] += e["judged"] or 0
        group["passed"] += e["passed"] or 0
        group["metrics"][e["metric"]] = {"mean": e["mean"], "n": e["n"]}
    for group in groups.values():
        if group["judged"]:
            group["pass_rate"] = 100.0 * group["passed"] / group["judged"]
    return list(groups.values())
