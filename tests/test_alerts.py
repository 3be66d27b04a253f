"""Cost-spike alerts: rules checked as runs finish, a Slack-compatible webhook and e-mail
through a local receiver and a local SMTP server (aiosmtpd), one alert per spike."""

from __future__ import annotations

import pytest

from app.alerts.bodies import RuleCreate
from app.alerts.rules import check_run, create_rule, list_alerts
from app.core.integration_settings import IntegrationSettings
from app.core.settings import Settings
from app.store.runs import create_run
from tests.conftest import MISTRAL_MODEL, agent_config, csrf, free_port, wait_for_run
from tests.fake_mistral import Reply
from tests.receivers import SMTPServer, WebhookReceiver, wait_until

pytestmark = pytest.mark.both_backends

FAST = IntegrationSettings(
    retry_attempts=3, retry_initial_s=0.01, retry_max_s=0.05, http_timeout_s=5
)


@pytest.fixture
def smtp():
    server = SMTPServer(free_port()).start()
    yield server
    server.stop()


@pytest.fixture
def settings(data_dir, fake_mistral, smtp, database_url):
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        agent_config=agent_config(fake_mistral.url),
        integrations=FAST.model_copy(
            update={
                "smtp_host": "127.0.0.1",
                "smtp_port": smtp.port,
                "smtp_from": "studio@example.test",
            }
        ),
    )


def finished_run(db, run_id: str, cost: float, ended_at: float) -> None:
    def write(d):
        create_run(
            d, {"id": run_id, "model": "m", "provider": "mistral", "started_at": ended_at - 1}
        )
        d.execute(
            "update runs set status = 'succeeded', cost_usd = ?, ended_at = ? where id = ?",
            [cost, ended_at, run_id],
        )

    db.write_sync(write)


def test_expensive_run_alerts_by_webhook_and_email(client, fake_mistral, smtp):
    hook = WebhookReceiver(fail_first=1)  # the first POST gets a 500: retried
    try:
        r = client.post(
            "/api/alerts/rules",
            json={
                "name": "pricey run",
                "kind": "run_cost",
                "threshold_usd": 0.0001,
                "webhook_url": hook.url,
                "email_to": "oncall@example.test, boss@example.test",
            },
        )
        assert r.status_code == 201, r.text
        fake_mistral.add(
            Reply(text="Costly answer.", usage=(1000, 200)), Reply(text="Cheap.", usage=(1, 1))
        )
        expensive = client.post("/api/runs", json={"prompt": "big", "model": MISTRAL_MODEL})
        run_id = expensive.json()["run_id"]
        wait_for_run(client, run_id)
        [alert] = wait_until(
            lambda: [
                a
                for a in client.get("/api/alerts").json()["alerts"]
                if all(d["status"] != "pending" for d in a["deliveries"])
            ],
            what="alert delivered",
        )
        assert alert["run_id"] == run_id and alert["value_usd"] > 0.0001
        by_channel = {d["channel"]: d for d in alert["deliveries"]}
        assert by_channel["webhook"]["status"] == "sent" and by_channel["webhook"]["attempts"] == 2
        assert by_channel["email"]["status"] == "sent"
        [post] = hook.posts
        assert "pricey run" in post["text"] and post["blocks"][0]["type"] == "section"
        [mail] = smtp.messages
        assert sorted(mail["to"]) == ["boss@example.test", "oncall@example.test"]
        assert "[AgentOp]" in mail["message"]["Subject"] and run_id in mail["message"].get_payload()
        # The failed first attempt is recorded and shown, not lost.
        errors = client.get("/api/alerts").json()["errors"]
        assert errors and "500" in errors[0]["error"] and errors[0]["final"] == 0
        page = client.get("/alerts").text
        assert "webhook: sent" in page and "2 attempts" in page and "500" in page
        # A cheap run raises nothing.
        cheap = client.post("/api/runs", json={"prompt": "small", "model": MISTRAL_MODEL})
        wait_for_run(client, cheap.json()["run_id"])
        # Nothing is asserted until the watcher has really checked the cheap run.
        client.blocking_portal.call(client.app.state.run_watcher.drained)
        assert len(client.get("/api/alerts").json()["alerts"]) == 1
    finally:
        hook.stop()


def test_failed_delivery_is_recorded_with_its_error(client, fake_mistral):
    hook = WebhookReceiver(fail_first=99, fail_status=503)
    try:
        client.post(
            "/api/alerts/rules",
            json={"name": "r", "kind": "run_cost", "threshold_usd": 0, "webhook_url": hook.url},
        )
        run_id = client.post("/api/runs", json={"prompt": "x", "model": MISTRAL_MODEL}).json()[
            "run_id"
        ]
        wait_for_run(client, run_id)
        [alert] = wait_until(
            lambda: [
                a
                for a in client.get("/api/alerts").json()["alerts"]
                if a["deliveries"][0]["status"] == "failed"
            ],
            what="failure",
        )
        delivery = alert["deliveries"][0]
        assert delivery["attempts"] == 3 and "503" in delivery["error"]
        errors = client.get("/api/alerts").json()["errors"]
        assert [e["attempt"] for e in errors] == [3, 2, 1] and errors[0]["final"] == 1
    finally:
        hook.stop()


def test_window_rule_alerts_once_per_spike(db):
    rule = db.write_sync(
        create_rule,
        RuleCreate(name="hourly", kind="window_cost", threshold_usd=1.0, window_s=3600),
    )
    t = 1_800_000_000.0
    finished_run(db, "a", 0.6, t)
    assert db.write_sync(check_run, "a") == []  # 0.6 in the window: under
    finished_run(db, "b", 0.6, t + 60)
    [first] = db.write_sync(check_run, "b")  # 1.2: the spike starts
    finished_run(db, "c", 0.6, t + 120)
    assert db.write_sync(check_run, "c") == []  # 1.8: the same spike, no new alert
    assert db.write_sync(check_run, "b") == []  # re-checking a run changes nothing
    finished_run(db, "d", 0.0, t + 7300)
    assert db.write_sync(check_run, "d") == []  # the window emptied: the spike is over
    alerts = db.read_sync(list_alerts)
    assert len(alerts) == 1 and alerts[0]["id"] == first and alerts[0]["resolved_at"]
    assert alerts[0]["value_usd"] == pytest.approx(1.2) and alerts[0]["rule_id"] == rule["id"]
    finished_run(db, "e", 1.5, t + 7400)
    assert len(db.write_sync(check_run, "e")) == 1  # a new spike is a new alert


def test_baseline_rule(db):
    db.write_sync(
        create_rule, RuleCreate(name="3x", kind="baseline", multiplier=3, baseline_runs=5)
    )
    t = 1_800_000_000.0
    for i in range(5):
        finished_run(db, f"base{i}", 0.01, t + i)
        assert db.write_sync(check_run, f"base{i}") == []
    finished_run(db, "spike1", 0.05, t + 10)
    [alert_id] = db.write_sync(check_run, "spike1")
    finished_run(db, "spike2", 0.2, t + 11)
    assert db.write_sync(check_run, "spike2") == []  # still the same spike
    [alert] = db.read_sync(list_alerts)
    assert alert["id"] == alert_id and alert["threshold_usd"] == pytest.approx(0.03)
    assert "3×" not in alert["message"] and "spike1" in alert["message"]


def test_run_rule_is_one_alert_per_run(db):
    db.write_sync(create_rule, RuleCreate(name="big", kind="run_cost", threshold_usd=0.5))
    finished_run(db, "x", 0.9, 1_800_000_000.0)
    assert len(db.write_sync(check_run, "x")) == 1
    assert db.write_sync(check_run, "x") == []


def test_the_alerts_page_shows_odd_rule_rows(app, page_client):
    """Rule rows with missing numbers read as "—" on the page, not as $0 or a 500."""
    for sql in (
        "insert into alert_rules (name, kind, created_at) values ('no threshold', 'run_cost', 0)",
        "insert into alert_rules (name, kind, threshold_usd, created_at)"
        " values ('no window', 'window_cost', 1.0, 0)",
        "insert into alert_rules (name, kind, created_at) values ('no baseline', 'baseline', 0)",
    ):
        app.state.store.write_sync(lambda d, sql=sql: d.execute(sql))
    r = page_client.get("/alerts")
    assert r.status_code == 200, r.text[:500]
    assert "a run costs more than —" in r.text and "within — min" in r.text
    assert "—× the average of the previous — runs" in r.text


def test_a_rule_row_that_cannot_be_checked_is_skipped(db, caplog):
    """A rule row the form could not make (no threshold: a hand-edited database) must not
    stop the other rules, nor raise for every run that ends."""
    db.write_sync(
        lambda d: d.execute(
            "insert into alert_rules (name, kind, created_at) values ('odd', 'run_cost', 0)"
        )
    )
    db.write_sync(
        lambda d: d.execute(
            "insert into alert_rules (name, kind, threshold_usd, created_at) values ('no window', 'window_cost', 1.0, 0)"
        )
    )
    db.write_sync(create_rule, RuleCreate(name="big", kind="run_cost", threshold_usd=0.5))
    finished_run(db, "x", 0.9, 1_800_000_000.0)
    [alert_id] = db.write_sync(check_run, "x")
    [alert] = db.read_sync(list_alerts)
    assert alert["id"] == alert_id and "big" in alert["message"]
    assert caplog.text.count("cannot be checked") == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "", "kind": "run_cost", "threshold_usd": 1}, "name"),
        ({"name": "n", "kind": "nope"}, "kind"),
        ({"name": "n", "kind": "run_cost"}, "threshold_usd is required"),
        ({"name": "n", "kind": "window_cost", "threshold_usd": 1, "window_s": "x"}, "window_s"),
        ({"name": "n", "kind": "baseline", "multiplier": 0.5}, "multiplier"),
        ({"name": "n", "kind": "run_cost", "threshold_usd": 1, "webhook_url": "ftp://x"}, "http"),
        (
            {"name": "n", "kind": "run_cost", "threshold_usd": 1, "email_to": "not an email"},
            "e-mail",
        ),
    ],
)
def test_bad_rules_are_400(client, body, message):
    r = client.post("/api/alerts/rules", json=body)
    assert r.status_code == 400 and message in r.text


def test_rule_management_needs_admin(app, keys):
    from litestar.testing import TestClient

    with TestClient(app) as c:
        c.headers["X-API-Key"] = keys["member"]
        r = c.post("/api/alerts/rules", json={"name": "n", "kind": "run_cost", "threshold_usd": 1})
        assert r.status_code == 403
        assert c.get("/api/alerts").status_code == 200
        assert c.get("/alerts").status_code == 200


def test_alerts_page_form(page_client):
    r = page_client.post(
        "/alerts/rules", data={"name": "", "kind": "run_cost", "_csrf_token": csrf(page_client)}
    )
    assert r.status_code == 422 and "required field name" in r.text
    r = page_client.post(
        "/alerts/rules",
        data={
            "name": "Team budget",
            "kind": "window_cost",
            "threshold_usd": "5",
            "window_s": "3600",
            "_csrf_token": csrf(page_client),
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    page = page_client.get("/alerts").text
    assert "Team budget" in page and "within 60 min" in page
    rule_id = page_client.get("/api/alerts").json()["rules"][0]["id"]
    r = page_client.post(
        f"/alerts/rules/{rule_id}/toggle",
        data={"_csrf_token": csrf(page_client)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert page_client.get("/api/alerts").json()["rules"][0]["enabled"] == 0


def test_a_rule_reads_without_an_exponent():
    """The largest multiplier a rule takes (10^6) once read "1e+06×"."""
    from app.alerts.rules import describe_rule

    rule = {"kind": "baseline", "multiplier": 1e6, "baseline_runs": 5}
    assert describe_rule(rule) == (
        "a run costs more than 1,000,000× the average of the previous 5 runs"
    )
    assert "2.5×" in describe_rule({**rule, "multiplier": 2.5})
