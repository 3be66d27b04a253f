"""Spans kept whole, OTLP logs and GenAI metrics, conversations that span several traces.

- ``spans`` gains what an OTLP span carries and the studio used to drop: the
  trace id, the OpenTelemetry span kind, the status message, events, links,
  and the resource and scope. ``attributes`` keeps every attribute, typed as
  it arrived (JSON values). Native runs record the same shape.
  ``(run_id, span_id)`` becomes unique: a span is stored once, and the run
  projection fills in its tokens and cost.
- ``runs.trace_id``: the trace a run is (OTLP), or the one it reports as (native).
- ``otlp_logs``: OTLP log records, kept on the span they name. They may
  arrive before their span (``run_id`` is then null until it does).
- ``otlp_metrics``: data points of the GenAI client metrics.
- ``otlp_traces.conversation_id``: ``session.id`` / ``gen_ai.conversation.id``,
  which becomes a session only once a second trace shares it.
"""

from __future__ import annotations

from sqlite_utils import Database

from app.store.migrations import migration

_SPAN_COLUMNS = {
    "trace_id": str,
    "span_kind": str,  # internal | server | client | producer | consumer | unspecified
    "status_message": str,
    "events": str,  # JSON list of {name, at, attributes}
    "links": str,  # JSON list of {trace_id, span_id, attributes}
    "resource": str,  # JSON object of resource attributes
    "scope": str,  # JSON {name, version, attributes}
}


@migration("0012_lossless_spans")
def lossless_spans(db: Database) -> None:
    spans = db.table("spans")
    for column, kind in _SPAN_COLUMNS.items():
        if column not in spans.columns_dict:
            spans.add_column(column, kind)
    if "trace_id" not in db.table("runs").columns_dict:
        db.table("runs").add_column("trace_id", str)
    db.execute(
        "update runs set trace_id = (select trace_id from otlp_traces t where t.run_id = runs.id)"
        " where source = 'otlp'"
    )
    # Runs recorded before this report under a trace id of their own.
    db.execute("update runs set trace_id = lower(hex(randomblob(16))) where trace_id is null")
    db.execute(
        "update spans set trace_id = (select trace_id from runs where runs.id = spans.run_id)"
    )
    # A span is stored once per run: keep the first copy of any duplicate.
    db.execute(
        "delete from spans where id not in (select min(id) from spans group by run_id, span_id)"
    )
    db.execute("drop index if exists idx_spans_run_id_span_id")
    spans.create_index(["run_id", "span_id"], unique=True, if_not_exists=True)
    db.table("runs").create_index(["trace_id"], if_not_exists=True)

    traces = db.table("otlp_traces")
    if "conversation_id" not in traces.columns_dict:
        traces.add_column("conversation_id", str)
    traces.create_index(["conversation_id"], if_not_exists=True)

    db.table("otlp_logs").create(
        {
            "id": int,
            "trace_id": str,  # "" for a record outside any trace
            "span_id": str,
            "run_id": str,  # null until the trace's run exists
            "at": float,
            "observed_at": float,
            "severity_number": int,
            "severity_text": str,
            "event_name": str,
            "body": str,  # JSON value
            "attributes": str,  # JSON object
            "resource": str,
            "scope": str,
            "applied": int,  # 1 once its GenAI content became messages of the run
            "received_at": float,
        },
        pk="id",
        not_null={"received_at"},
        defaults={"applied": 0, "trace_id": "", "span_id": ""},
        if_not_exists=True,
    )
    db.table("otlp_logs").create_index(["trace_id", "span_id"], if_not_exists=True)
    db.table("otlp_logs").create_index(["run_id", "at"], if_not_exists=True)
    db.table("otlp_logs").create_index(["received_at"], if_not_exists=True)

    db.table("otlp_metrics").create(
        {
            "id": int,
            "name": str,
            "unit": str,
            "kind": str,  # histogram | sum | gauge
            "start_at": float,
            "at": float,
            "attributes": str,  # JSON object: gen_ai.operation.name, gen_ai.token.type, model…
            "data": str,  # JSON: count, sum, min, max, bounds, bucket_counts (or value)
            "resource": str,
            "scope": str,
            "received_at": float,
        },
        pk="id",
        not_null={"name", "received_at"},
        if_not_exists=True,
    )
    db.table("otlp_metrics").create_index(["name", "at"], if_not_exists=True)
