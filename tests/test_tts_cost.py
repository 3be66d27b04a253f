"""Cost beyond tokens: ElevenLabs speech priced per character by model, with dated,
overridable price tables, counted in run, session and dashboard totals."""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.core.integration_settings import IntegrationSettings
from app.core.settings import Settings
from app.pricing.tables import (
    add_override,
    load_settings_overrides,
    lookup,
    price_event,
    price_table,
)
from tests.conftest import MISTRAL_MODEL, agent_config, api_client, wait_for_run
from tests.fake_mistral import Reply

pytestmark = pytest.mark.both_backends


def at(day: str) -> float:
    return dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp()


def tts_event(characters: int, model: str = "eleven_multilingual_v2", when: str = "2026-06-01"):
    return {
        "type": "tool_call_finished",
        "at": at(when),
        "call_id": "c1",
        "name": "elevenlabs_speak",
        "arguments": {},
        "result": "ok",
        "error": None,
        "latency_ms": 5.0,
        "cost_lines": [
            {"vendor": "elevenlabs", "kind": "tts", "model": model, "characters": characters}
        ],
    }


def test_characters_priced_by_model_and_credit_price():
    full = price_event(None, tts_event(1000))
    assert full["cost_status"] == "priced"
    [line] = full["cost_lines"]
    assert line["credits"] == 1000 and line["usd"] == pytest.approx(0.22)
    assert full["cost_usd"] == pytest.approx(0.22)
    flash = price_event(None, tts_event(1000, "eleven_flash_v2_5"))
    assert flash["cost_usd"] == pytest.approx(0.11)  # half a credit per character
    unknown = price_event(None, tts_event(10, "eleven_future_v9"))
    assert unknown["cost_status"] == "unpriced" and unknown["cost_usd"] is None


def test_overrides_have_effective_dates(db):
    db.write_sync(
        add_override,
        {
            "vendor": "elevenlabs",
            "item": "credit",
            "field": "usd_per_credit",
            "value": 0.0003,
            "effective_from": "2027-01-01",
        },
        "page",
        0.0,
    )
    before = db.read_sync(lambda d: price_event(d, tts_event(1000, when="2026-12-31")))
    after = db.read_sync(lambda d: price_event(d, tts_event(1000, when="2027-01-02")))
    assert before["cost_usd"] == pytest.approx(0.22)  # the built-in price still applied then
    assert after["cost_usd"] == pytest.approx(0.30)
    # Mistral token prices go through the same tables.
    db.write_sync(
        add_override,
        {
            "vendor": "mistral",
            "item": "mistral-small-latest",
            "field": "input_per_m",
            "value": 1.0,
            "effective_from": "2027-01-01",
        },
        "page",
        0.0,
    )
    assert db.read_sync(lookup, "mistral", "mistral-small", "input_per_m", at("2027-02-01")) == 1.0
    assert db.read_sync(lookup, "mistral", "mistral-small", "input_per_m", at("2026-12-01")) == 0.1
    table = db.read_sync(price_table, at("2027-02-01"))
    credit = next(r for r in table if r["item"] == "credit")
    assert credit["value"] == 0.0003 and credit["overrides"][0]["source"] == "page"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"vendor": "acme", "item": "x", "field": "input_per_m", "value": 1}, "vendor"),
        ({"vendor": "mistral", "item": "x", "field": "usd_per_credit", "value": 1}, "field"),
        ({"vendor": "mistral", "item": "x", "field": "input_per_m", "value": "a"}, "value"),
        ({"vendor": "mistral", "item": "x", "field": "input_per_m", "value": -1}, ">= 0"),
        (
            {
                "vendor": "mistral",
                "item": "x",
                "field": "input_per_m",
                "value": 1,
                "effective_from": "tomorrow",
            },
            "effective_from",
        ),
    ],
)
def test_bad_overrides_are_refused(db, row, message):
    from app.pricing.tables import PriceError

    with pytest.raises(PriceError, match=message):
        db.write_sync(add_override, row, "page", 0.0)


def test_settings_file_and_env_override_prices(db, tmp_path):
    prices = tmp_path / "prices.yaml"
    prices.write_text(
        "- {vendor: elevenlabs, item: eleven_multilingual_v2, field: credits_per_char,"
        " value: 2, effective_from: '2020-01-01'}\n"
    )
    assert db.write_sync(load_settings_overrides, prices, 0.0001, 0.0) == 2
    priced = db.read_sync(lambda d: price_event(d, tts_event(1000)))
    assert priced["cost_usd"] == pytest.approx(2000 * 0.0001)
    # Reloading replaces (not duplicates) the settings rows.
    assert db.write_sync(load_settings_overrides, None, None, 0.0) == 0
    assert db.read_sync(lambda d: price_event(d, tts_event(1000)))["cost_usd"] == pytest.approx(
        0.22
    )


class FakeElevenLabs:
    """Answers text-to-speech with a few bytes of 'audio' and counts the characters asked."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # noqa: D401 - quiet
                pass

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.texts.append(body["text"])
                audio = b"ID3fake-mp3"
                self.send_response(200)
                self.send_header("Content-Type", "audio/mpeg")
                self.send_header("Content-Length", str(len(audio)))
                self.end_headers()
                self.wfile.write(audio)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_speech_cost_in_run_session_and_dashboard_totals(
    data_dir, fake_mistral, keys, database_url
):
    eleven = FakeElevenLabs()
    config = agent_config(fake_mistral.url)
    tools = dict(config.tools)
    tools["elevenlabs_speak"] = {
        "api_key": "el-key",
        "base_url": eleven.url,
        "model_id": "eleven_multilingual_v2",
        "timeout": 10,
    }
    settings = Settings(
        data_dir=data_dir,
        database_url=database_url,
        agent_config=agent_config(fake_mistral.url, tools=tools),
        integrations=IntegrationSettings(elevenlabs_usd_per_credit=0.0003),
    )
    text = "Bonjour, voici la météo de Paris."
    fake_mistral.add(
        Reply(
            tool_calls=[{"name": "elevenlabs_speak", "arguments": {"text": text}}],
            usage=(1000, 100),
        ),
        Reply(text="Done.", usage=(1000, 100)),
    )
    try:
        with api_client(settings, keys["member"]) as c:
            r = c.post(
                "/api/runs",
                json={
                    "prompt": "Say the weather",
                    "model": MISTRAL_MODEL,
                    "session": "voice",
                    "tools": ["elevenlabs_speak"],
                },
            )
            detail = wait_for_run(c, r.json()["run_id"])
            run = detail["run"]
            [tool] = detail["tool_calls"]
            assert eleven.texts == [text]
            tts_usd = len(text) * 1.0 * 0.0003
            assert tool["status"] == "ok" and tool["cost_usd"] == pytest.approx(tts_usd)
            assert tool["cost_lines"][0]["characters"] == len(text)
            tokens_usd = 2 * (1000 * 0.1 + 100 * 0.3) / 1e6
            assert run["cost_status"] == "priced"
            assert run["extra_cost_usd"] == pytest.approx(tts_usd)
            assert run["cost_usd"] == pytest.approx(tokens_usd + tts_usd)
            # Session totals add up the runs' totals.
            session = [x for x in c.get("/api/runs").json()["runs"] if x["session_id"] == "voice"]
            assert sum(x["cost_usd"] for x in session) == pytest.approx(tokens_usd + tts_usd)
            page = c.get(f"/runs/{run['id']}").text
            assert f"{len(text)} chars" in page and "beyond tokens" in page
            assert "beyond tokens" in c.get("/").text
    finally:
        eleven.stop()
