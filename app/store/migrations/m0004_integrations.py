"""Integrations: OTLP trace mapping, price overrides, exports, fine-tuning, alerts, outbound log.

``runs.extra_cost_usd`` keeps the part of a run's cost that is not tokens
(text-to-speech characters, …) beside the total, so pages can show it
without aggregating tool calls.
"""

from __future__ import annotations

from sqlite_utils import Database

from app.store.migrations import migration


@migration("0004_integrations")
def integrations(db: Database) -> None:
    db.table("runs").add_column("extra_cost_usd", float, not_null_default=0.0)
    # Cost alerts sum the runs that ended within a window.
    db.table("runs").create_index(["ended_at"])

    # One row per ingested OTLP trace: which run it became, and how far its
    # conversation has been recorded (each LLM span repeats the history).
    db.table("otlp_traces").create(
        {
            "trace_id": str,
            "run_id": str,
            "service_name": str,
            "root_span_id": str,  # set when the trace's root span arrives
            "messages_seen": int,
            "created_at": float,
        },
        pk="trace_id",
        defaults={"messages_seen": 0},
        foreign_keys=[("run_id", "runs", "id")],
    )
    db.table("otlp_traces").create_index(["run_id"])

    # Dated price overrides (from the settings file or the prices page); the
    # latest row whose effective_from is not after a call's date applies.
    db.table("price_overrides").create(
        {
            "id": int,
            "vendor": str,  # mistral | elevenlabs
            "item": str,  # model family, model id, or "credit"
            "field": str,  # input_per_m | output_per_m | credits_per_char | usd_per_credit
            "value": float,
            "effective_from": str,  # YYYY-MM-DD
            "source": str,  # settings | page
            "note": str,
            "created_at": float,
        },
        pk="id",
        not_null={"vendor", "item", "field", "value", "effective_from"},
    )
    db.table("price_overrides").create_index(["vendor", "item", "field", "effective_from"])

    # Every failed attempt of an outbound call, so no error is lost.
    db.table("integration_errors").create(
        {
            "id": int,
            "integration": str,  # webhook | smtp | huggingface | wandb | mistral
            "action": str,
            "subject": str,  # what it was for: export:3, alert:7, finetune:2, run:abc
            "attempt": int,
            "final": int,  # 1 when no retry followed
            "error": str,
            "at": float,
        },
        pk="id",
    )
    db.table("integration_errors").create_index(["subject", "at"])
    db.table("integration_errors").create_index(["at"])

    db.table("exports").create(
        {
            "id": int,
            "kind": str,  # huggingface | wandb | finetune_jsonl
            "status": str,  # queued | running | succeeded | failed
            "progress": float,  # 0..1
            "stage": str,
            "params": str,
            "result": str,
            "error": str,
            "created_by": str,
            "created_at": float,
            "started_at": float,
            "finished_at": float,
        },
        pk="id",
        not_null={"kind", "status", "created_at"},
        defaults={"progress": 0.0},
    )
    db.table("exports").create_index(["created_at"])

    db.table("finetune_jobs").create(
        {
            "id": int,
            "export_id": int,
            "status": str,  # uploading | queued | running | succeeded | failed | cancelled
            "base_model": str,
            "file_path": str,
            "mistral_file_id": str,
            "mistral_job_id": str,
            "fine_tuned_model": str,
            "hyperparameters": str,
            "detail": str,  # the provider's last status payload
            "error": str,
            "created_by": str,
            "created_at": float,
            "updated_at": float,
            "finished_at": float,
        },
        pk="id",
        not_null={"status", "base_model", "created_at"},
    )
    db.table("finetune_jobs").create_index(["created_at"])
    db.table("finetune_jobs").create_index(["status"])

    # Models runs can be started or replayed on beyond those in the agent config.
    db.table("registered_models").create(
        {
            "name": str,
            "provider": str,
            "base_model": str,
            "finetune_job_id": int,
            "created_at": float,
        },
        pk="name",
    )

    db.table("alert_rules").create(
        {
            "id": int,
            "name": str,
            "kind": str,  # run_cost | window_cost | baseline
            "threshold_usd": float,  # run_cost, window_cost
            "window_s": float,  # window_cost
            "multiplier": float,  # baseline
            "baseline_runs": int,  # baseline: how many previous runs make the baseline
            "webhook_url": str,
            "email_to": str,
            "enabled": int,
            "created_at": float,
        },
        pk="id",
        not_null={"name", "kind", "created_at"},
        defaults={"enabled": 1},
    )
    db.table("alerts").create(
        {
            "id": int,
            "rule_id": int,
            "fingerprint": str,  # one alert per spike: rule + run, or rule + episode
            "run_id": str,
            "value_usd": float,
            "threshold_usd": float,
            "message": str,
            "created_at": float,
            "resolved_at": float,  # episode rules: when the condition last cleared
        },
        pk="id",
        foreign_keys=[("rule_id", "alert_rules", "id")],
    )
    db.table("alerts").create_index(["fingerprint"], unique=True)
    db.table("alerts").create_index(["created_at"])
    db.table("alerts").create_index(["rule_id", "resolved_at"])
    db.table("alert_deliveries").create(
        {
            "id": int,
            "alert_id": int,
            "channel": str,  # webhook | email
            "target": str,
            "status": str,  # pending | sent | failed
            "attempts": int,
            "error": str,
            "sent_at": float,
        },
        pk="id",
        foreign_keys=[("alert_id", "alerts", "id")],
        defaults={"attempts": 0},
    )
    db.table("alert_deliveries").create_index(["alert_id"])
