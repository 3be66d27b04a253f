"""OTLP metrics: the GenAI ones are stored; others are reported as not accepted.

Instrumentations record ``gen_ai.client.token.usage`` and
``gen_ai.client.operation.duration`` (histograms), and model servers the
``gen_ai.server.*`` ones. The studio keeps their data points as they came
(attributes, times, counts, sums, buckets) in ``otlp_metrics``. Any other
metric is counted in ``partial_success.rejected_data_points`` with a message
naming it, so an exporter pointed here learns what is and is not kept
instead of a silent drop or a bare 404.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from sqlite_utils import Database

from app.ingest import normalize
from app.ingest.decode import attributes, scoped
from app.store.rows import encode_json

STORED_PREFIX = "gen_ai."
SUPPORTED = "only GenAI metrics (gen_ai.*, such as gen_ai.client.token.usage) are stored"


@dataclass
class MetricPoint:
    name: str
    unit: str
    kind: str  # histogram | exponential_histogram | sum | gauge | summary
    start_at: float | None
    at: float
    attributes: dict[str, Any]
    data: dict[str, Any]
    resource: dict[str, Any]
    scope: dict[str, Any]


def _seconds(ns: int) -> float | None:
    return ns / 1e9 if ns else None


def _number(point: Any) -> float | int | str | None:
    kind = point.WhichOneof("value")
    return None if kind is None else normalize.number(float(getattr(point, kind)))


def _distribution(point: Any) -> dict[str, Any]:
    """Count, sum, min and max of a histogram point (the optional ones None when unset)."""
    return {
        "count": point.count,
        **{
            name: normalize.number(getattr(point, name)) if point.HasField(name) else None
            for name in ("sum", "min", "max")
        },
    }


def _points(metric: Metric) -> list[tuple[Any, dict[str, Any]]]:
    """(data point, what it measured) for each point of a metric, whatever its type."""
    kind = metric.WhichOneof("data")
    if kind == "histogram":
        return [
            (
                p,
                {
                    **_distribution(p),
                    "bounds": [normalize.number(b) for b in p.explicit_bounds],
                    "bucket_counts": list(p.bucket_counts),
                },
            )
            for p in metric.histogram.data_points
        ]
    if kind == "exponential_histogram":
        return [
            (p, {**_distribution(p), "scale": p.scale, "zero_count": p.zero_count})
            for p in metric.exponential_histogram.data_points
        ]
    if kind in ("sum", "gauge"):
        return [(p, {"value": _number(p)}) for p in getattr(metric, kind).data_points]
    if kind == "summary":
        return [
            (p, {"count": p.count, "sum": normalize.number(p.sum)})
            for p in metric.summary.data_points
        ]
    return []


def metrics_of(request: ExportMetricsServiceRequest) -> tuple[list[MetricPoint], int, str]:
    """The GenAI data points of a request, how many others were not kept, and why."""
    points: list[MetricPoint] = []
    others: dict[str, int] = {}
    for resource, scope, metric in scoped(request.resource_metrics, "scope_metrics", "metrics"):
        name = normalize.name(metric.name, 200)
        found = _points(metric)
        if not name.startswith(STORED_PREFIX):
            others[name] = others.get(name, 0) + len(found)
            continue
        for point, data in found:
            points.append(
                MetricPoint(
                    name=name,
                    unit=normalize.name(metric.unit, 100),
                    kind=metric.WhichOneof("data") or "",
                    start_at=_seconds(point.start_time_unix_nano),
                    at=_seconds(point.time_unix_nano) or time.time(),
                    attributes=attributes(point.attributes),
                    data=data,
                    resource=resource,
                    scope=scope,
                )
            )
    rejected = sum(others.values())
    reason = ""
    if rejected:
        named = ", ".join(sorted(others)[:10])
        reason = f"{SUPPORTED}; not stored: {named}"
    return points, rejected, reason


def store_metrics(db: Database, points: list[MetricPoint]) -> int:
    """Insert the data points (writer thread); returns how many."""
    now = time.time()
    db.conn.executemany(
        "insert into otlp_metrics (name, unit, kind, start_at, at, attributes, data, resource,"
        " scope, received_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            [
                p.name,
                p.unit,
                p.kind,
                p.start_at,
                p.at,
                encode_json(p.attributes),
                encode_json(p.data),
                encode_json(p.resource),
                encode_json(p.scope),
                now,
            ]
            for p in points
        ],
    )
    return len(points)


def metric_summary(db: Database, since: float) -> list[dict[str, Any]]:
    """Per metric name and model: data points, total count and sum since ``since``."""
    rows = db.execute(
        "select name, unit, json_extract(attributes, '$.\"gen_ai.request.model\"') as model,"
        " json_extract(attributes, '$.\"gen_ai.token.type\"') as token_type,"
        " count(*) as points, sum(json_extract(data, '$.count')) as count,"
        " sum(json_extract(data, '$.sum')) as total from otlp_metrics"
        " where at >= ? and json_valid(attributes) and json_valid(data)"
        " group by name, unit, model, token_type order by name, model, token_type",
        [since],
    ).fetchall()
    return [dict(row) for row in rows]
