"""Tools at their client boundary: real clients against loopback fakes, wandb offline."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agents.tools import load_tool


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list = []

    def log_message(self, *args):
        pass

    def _reply(self, status, body, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        self.seen.append(("GET", self.path, dict(self.headers)))
        if self.path.startswith("/api/models"):
            models = [
                {"id": "google-bert/bert-base-uncased", "_id": "1", "modelId": "x"},
                {"id": "distilbert/distilbert-base-uncased", "_id": "2", "modelId": "y"},
            ]
            self._reply(200, json.dumps(models).encode())
        else:
            self._reply(404, b"{}")

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.seen.append(("POST", self.path, dict(self.headers), body))
        if self.path.startswith("/v1/text-to-speech/"):
            if self.headers.get("xi-api-key") != "el-key":
                self._reply(401, b'{"detail": "bad key"}')
                return
            self._reply(200, b"ID3fake-mp3-bytes", "audio/mpeg")
        else:
            self._reply(404, b"{}")


@pytest.fixture
def fake_vendor():
    handler = type("Handler", (_Recorder,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler.seen
    server.shutdown()
    server.server_close()


def test_hf_list_models_through_huggingface_hub(fake_vendor):
    url, seen = fake_vendor
    tool = load_tool("hf_list_models", {"endpoint": url, "token": "hf_test"})
    out = tool({"search": "bert", "limit": 2})
    assert out.text.splitlines() == [
        "google-bert/bert-base-uncased",
        "distilbert/distilbert-base-uncased",
    ]
    method, path, headers = seen[0]
    assert path.startswith("/api/models") and "search=bert" in path
    assert headers.get("authorization") == "Bearer hf_test"


def test_elevenlabs_speak_saves_audio_and_reports_characters(fake_vendor, tmp_path):
    url, seen = fake_vendor
    settings = {
        "api_key": "el-key",
        "base_url": url,
        "data_dir": str(tmp_path),
        "voice_id": "voice123",
        "model_id": "eleven_flash_v2_5",
    }
    out = load_tool("elevenlabs_speak", settings)({"text": "Hello there"})
    [line] = out.cost_lines
    assert line == {
        "vendor": "elevenlabs",
        "kind": "tts",
        "model": "eleven_flash_v2_5",
        "characters": 11,
    }
    [audio] = list((tmp_path / "audio").glob("*.mp3"))
    assert audio.read_bytes() == b"ID3fake-mp3-bytes"
    post = [s for s in seen if s[0] == "POST"][0]
    assert post[1].startswith("/v1/text-to-speech/voice123")
    assert post[3]["text"] == "Hello there" and post[3]["model_id"] == "eleven_flash_v2_5"


def test_elevenlabs_without_key_fails_clearly(tmp_path):
    with pytest.raises(RuntimeError, match="ELEVENLABS_API_KEY"):
        load_tool("elevenlabs_speak", {"data_dir": str(tmp_path)})({"text": "hi"})


def test_wandb_log_offline_writes_a_local_run(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    tool = load_tool("wandb_log", {"project": "t", "mode": "offline", "data_dir": str(tmp_path)})
    out = tool({"metrics": [{"name": "accuracy", "value": 0.93}, {"name": "loss", "value": 0.2}]})
    assert "logged 2 metric(s)" in out.text and "offline" in out.text
    runs = list((tmp_path / "wandb" / "wandb").glob("offline-run-*"))
    assert runs, list(tmp_path.rglob("*"))[:20]
    assert any(p.suffix == ".wandb" for p in runs[0].iterdir())


def test_wandb_log_rejects_non_numeric_metrics(tmp_path):
    tool = load_tool("wandb_log", {"mode": "offline", "data_dir": str(tmp_path)})
    with pytest.raises(ValueError, match="not numeric: accuracy"):
        tool({"metrics": [{"name": "accuracy", "value": "high"}]})


@pytest.fixture
def silent_vendor():
    """Accepts requests and never answers until the test ends: a stalled upstream."""
    released = threading.Event()

    class Silent(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            released.wait(30)

        do_POST = do_GET  # noqa: N815

    server = ThreadingHTTPServer(("127.0.0.1", 0), Silent)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    released.set()
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("name", "settings", "arguments"),
    [
        ("hf_list_models", {}, {"search": "bert"}),
        ("elevenlabs_speak", {"api_key": "el-key"}, {"text": "hi"}),
    ],
)
def test_network_tools_give_up_within_their_time_limit(
    silent_vendor, tmp_path, name, settings, arguments
):
    """The time limit reaches the HTTP client, so a stalled call ends its own thread."""
    url_key = "endpoint" if name == "hf_list_models" else "base_url"
    tool = load_tool(
        name, {**settings, url_key: silent_vendor, "timeout": 0.3, "data_dir": str(tmp_path)}
    )
    started = time.monotonic()
    with pytest.raises(Exception, match="(?i)timed? ?out"):
        tool(arguments)
    assert time.monotonic() - started < 10


# --- offline: fail at once, saying so ----------------------------------------------


@pytest.fixture
def refused_url():
    """A loopback port nobody listens on (bound, then closed): connecting is refused."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


OFFLINE_CASES = [
    ("hf_list_models", "endpoint", {}, {"search": "bert"}),
    ("elevenlabs_speak", "base_url", {"api_key": "el-key"}, {"text": "hi"}),
]


@pytest.mark.parametrize(("name", "url_key", "settings", "arguments"), OFFLINE_CASES)
def test_an_unresolvable_host_fails_at_once_saying_so(tmp_path, name, url_key, settings, arguments):
    from agents.tools._network import Unreachable

    # .invalid never resolves (RFC 6761): no network is asked for a real name.
    url = "http://agentop-test.invalid"
    tool = load_tool(name, {**settings, url_key: url, "timeout": 30, "data_dir": str(tmp_path)})
    started = time.monotonic()
    with pytest.raises(Unreachable, match="agentop-test.invalid cannot be resolved"):
        tool(arguments)
    assert time.monotonic() - started < 10  # not the 30 s limit
    assert not list(tmp_path.glob("audio/*"))  # no empty audio file left behind


@pytest.mark.parametrize(("name", "url_key", "settings", "arguments"), OFFLINE_CASES)
def test_a_refused_connection_fails_at_once_saying_so(
    tmp_path, refused_url, name, url_key, settings, arguments
):
    from agents.tools._network import Unreachable

    tool = load_tool(
        name, {**settings, url_key: refused_url, "timeout": 30, "data_dir": str(tmp_path)}
    )
    started = time.monotonic()
    with pytest.raises(Unreachable, match="refused the connection"):
        tool(arguments)
    assert time.monotonic() - started < 5


def test_hf_offline_mode_asks_nothing(fake_vendor, monkeypatch):
    from huggingface_hub import constants

    from agents.tools._network import Unreachable

    url, seen = fake_vendor
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    tool = load_tool("hf_list_models", {"endpoint": url, "timeout": 30})
    with pytest.raises(Unreachable, match="HF_HUB_OFFLINE"):
        tool({"search": "bert"})
    assert seen == []


def test_connecting_has_a_short_limit_of_its_own():
    import httpx

    from agents.tools._network import CONNECT_TIMEOUT_S, http_timeout, short_connect

    timeout = http_timeout(60)
    assert timeout.connect == CONNECT_TIMEOUT_S and timeout.read == 60
    assert http_timeout(0.5).connect == 0.5  # never past the whole limit
    request = httpx.Request(
        "GET", "http://127.0.0.1/", extensions={"timeout": httpx.Timeout(60).as_dict()}
    )
    short_connect(request)
    assert request.extensions["timeout"]["connect"] == CONNECT_TIMEOUT_S
    assert request.extensions["timeout"]["read"] == 60
