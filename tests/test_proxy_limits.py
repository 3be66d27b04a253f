"""The login limit holds behind a proxy, and only a trusted proxy may name the client.

Served by uvicorn exactly as ``agentop serve`` configures it (the proxy
options come from the same function), and tried from 127.0.0.1, which
uvicorn on its own would trust.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn

from app.auth.proxies import uvicorn_proxy_options
from app.core.settings import Settings, SettingsError
from app.main import create_app
from tests.conftest import free_port
from tests.receivers import wait_until

LIMIT = 10  # Settings.login_attempts_per_minute


@contextmanager
def serve(settings: Settings, server_reads_proxy_headers: bool = True) -> Iterator[httpx.Client]:
    """The app under uvicorn with the serve command's proxy options; a client for it.

    ``server_reads_proxy_headers=False``: as under a server that leaves proxy
    headers alone, so only the app's own resolution applies.
    """
    port = free_port()
    options = uvicorn_proxy_options(settings.trusted_proxies)
    if not server_reads_proxy_headers:
        options = {"proxy_headers": False}
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=3,
        **options,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 20, "the server to start")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            client.get("/login")  # the CSRF cookie, as a browser gets it
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def try_login(client: httpx.Client, key: str, forwarded_for: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return client.post(
        "/login",
        data={"key": key, "_csrf_token": client.cookies.get("csrftoken", "")},
        headers=headers,
        follow_redirects=False,
    )


def test_a_new_forwarded_for_on_each_try_does_not_reset_the_limit(settings, keys):
    with serve(settings) as client:
        codes = [
            try_login(client, f"bad-{i}", forwarded_for=f"203.0.113.{i}").status_code
            for i in range(LIMIT + 1)
        ]
        assert codes == [401] * LIMIT + [429]


@pytest.mark.parametrize("server_reads_proxy_headers", [True, False])
def test_behind_a_trusted_proxy_each_client_has_its_own_limit(
    settings, keys, server_reads_proxy_headers
):
    settings.trusted_proxies = ("127.0.0.0/8",)
    with serve(settings, server_reads_proxy_headers) as proxy:
        codes = [
            try_login(proxy, f"bad-{i}", forwarded_for="198.51.100.7").status_code
            for i in range(LIMIT + 1)
        ]
        assert codes == [401] * LIMIT + [429]
        # Another client behind the same proxy is not held back by the first one.
        assert try_login(proxy, "bad-x", forwarded_for="198.51.100.8").status_code == 401
        # A client that appends a fake hop is still known by the address the proxy saw.
        spoofed = try_login(proxy, "bad-y", forwarded_for="10.9.9.9, 198.51.100.7")
        assert spoofed.status_code == 429
        r = try_login(proxy, keys["viewer"], forwarded_for="198.51.100.9")
        assert r.status_code == 303  # and a good key from a fresh client logs in


def test_many_clients_trying_one_key_prefix_are_limited(settings, keys):
    settings.trusted_proxies = ("127.0.0.1",)
    prefix = keys["admin"][:11]
    with serve(settings) as proxy:
        codes = [
            try_login(proxy, f"{prefix}guess{i}", forwarded_for=f"198.51.100.{i}").status_code
            for i in range(LIMIT + 1)
        ]
        assert codes == [401] * LIMIT + [429]
        r = try_login(proxy, keys["admin"], forwarded_for="192.0.2.1")
        assert r.status_code == 429 and "Too many failed tries with this key" in r.text
        # Other keys log in, and the locked key still works as an API key.
        assert try_login(proxy, keys["member"], forwarded_for="192.0.2.2").status_code == 303
        api = proxy.get("/api/runs", headers={"X-API-Key": keys["admin"]})
        assert api.status_code == 200


def test_trusted_proxies_setting_is_checked(monkeypatch):
    monkeypatch.setenv("AGENTOP_TRUSTED_PROXIES", " 10.0.0.5, 10.1.2.3/16 ,::1")
    assert Settings.from_env().trusted_proxies == ("10.0.0.5", "10.1.0.0/16", "::1")
    monkeypatch.setenv("AGENTOP_TRUSTED_PROXIES", "")
    settings = Settings.from_env()
    assert settings.trusted_proxies == ()
    assert uvicorn_proxy_options(settings.trusted_proxies)["proxy_headers"] is False
    monkeypatch.setenv("AGENTOP_TRUSTED_PROXIES", "10.0.0.5,proxy.local")
    with pytest.raises(SettingsError, match="'proxy.local' is not an IP address"):
        Settings.from_env()
