"""Keys that cannot lock the team out, and the housekeeping of login sessions.

- The last active admin key can be neither revoked nor demoted, in the page
  or with ``agentop keys``; the refusal says why.
- Revoking the key you are logged in with asks first (a form, no JavaScript).
- Expired login sessions are deleted; "last used" follows browser use too,
  at most once a minute per key.
"""

from __future__ import annotations

import time

import pytest
from bs4 import BeautifulSoup
from litestar.testing import TestClient

from app.auth.keys import find_key
from app.cli import main as agentop
from app.main import create_app
from app.store import Store
from tests.conftest import csrf, login

pytestmark = pytest.mark.both_backends

LAST_ADMIN = "it is the last active admin key"


def key_row(client: TestClient, name: str) -> dict:
    rows = client.app.state.store.read_sync(
        lambda db: [dict(r) for r in db.execute("select * from api_keys where name = ?", [name])]
    )
    return rows[0]


def post(client: TestClient, path: str, **data: str):  # type: ignore[no-untyped-def]
    return client.post(path, data={**data, "_csrf_token": csrf(client)}, follow_redirects=False)


def test_the_last_admin_cannot_be_revoked_or_demoted_in_the_page(page_client):
    # Revoking your own key asks first; nothing happens until confirmed.
    r = post(page_client, "/settings/keys/revoke", name="admin-key")
    assert r.status_code == 200
    page = BeautifulSoup(r.text, "html.parser")
    confirm = page.select_one(".confirm-revoke form")
    assert "Revoke your own key" in page.select_one(".confirm-revoke").text
    assert confirm.select_one("input[name=confirm]")["value"] == "yes"
    assert confirm.select_one("input[name=_csrf_token]")["value"]
    assert key_row(page_client, "admin-key")["revoked_at"] is None

    # Confirmed, it is still refused: the team would have no admin left.
    r = post(page_client, "/settings/keys/revoke", name="admin-key", confirm="yes")
    assert r.status_code == 409
    alert = BeautifulSoup(r.text, "html.parser").select_one("#key-action-error")
    assert LAST_ADMIN in alert.text and "Create another admin key first" in alert.text
    r = post(page_client, "/settings/keys/role", name="admin-key", role="member")
    assert r.status_code == 409 and LAST_ADMIN in r.text
    assert key_row(page_client, "admin-key")["role"] == "admin"
    assert key_row(page_client, "admin-key")["revoked_at"] is None
    assert page_client.get("/settings/keys").status_code == 200  # still an admin


def test_with_another_admin_you_may_revoke_your_own_key_after_confirming(page_client, keys):
    assert post(page_client, "/settings/keys", name="second", role="member").status_code == 200
    # Promote it in the page, then demoting another key is fine.
    assert post(page_client, "/settings/keys/role", name="second", role="admin").status_code == 200
    assert key_row(page_client, "second")["role"] == "admin"
    assert (
        post(page_client, "/settings/keys/role", name="member-key", role="viewer").status_code
        == 200
    )
    assert key_row(page_client, "member-key")["role"] == "viewer"

    r = post(page_client, "/settings/keys/revoke", name="admin-key", confirm="yes")
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert key_row(page_client, "admin-key")["revoked_at"] is not None
    r = page_client.get("/settings/keys", headers={"Accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303  # logged out: the session ended with the key
    assert page_client.app.state.store.read_sync(find_key, keys["admin"]) is None


def test_revoking_another_key_needs_no_confirmation(page_client):
    r = post(page_client, "/settings/keys/revoke", name="viewer-key")
    assert r.status_code == 200 and key_row(page_client, "viewer-key")["revoked_at"] is not None
    assert "confirm-revoke" not in r.text


def test_the_cli_refuses_to_remove_the_last_admin(tmp_path, capsys):
    d = ["--data-dir", str(tmp_path)]
    assert agentop(["keys", "create", "root", "--role", "admin", *d]) == 0
    assert agentop(["keys", "create", "ops", "--role", "member", *d]) == 0
    capsys.readouterr()

    assert agentop(["keys", "revoke", "root", *d]) == 2
    assert LAST_ADMIN in capsys.readouterr().err
    assert agentop(["keys", "role", "root", "viewer", *d]) == 2
    assert LAST_ADMIN in capsys.readouterr().err

    assert agentop(["keys", "role", "ops", "admin", *d]) == 0
    assert "now admin" in capsys.readouterr().out
    assert agentop(["keys", "revoke", "root", *d]) == 0  # ops is still an admin
    assert agentop(["keys", "role", "ops", "member", *d]) == 2
    assert LAST_ADMIN in capsys.readouterr().err
    assert agentop(["keys", "list", *d]) == 0
    listing = capsys.readouterr().out
    assert "root" in listing and "revoked" in listing


def _sessions(store: Store) -> list[dict]:
    return store.read_sync(lambda db: [dict(r) for r in db.execute("select * from sessions")])


def test_expired_sessions_are_purged_on_login_and_at_start(settings, keys):
    with TestClient(create_app(settings)) as client:
        login(client, keys["viewer"])
        store = client.app.state.store
        # Expire it, as fourteen days would.
        store.write_sync(lambda db: db.execute("update sessions set expires_at = ?", [time.time()]))
        assert len(_sessions(store)) == 1
        login(client, keys["member"])
        assert [s["key_id"] for s in _sessions(store)] == [key_row(client, "member-key")["id"]]
        store.write_sync(lambda db: db.execute("update sessions set expires_at = 1"))
    with TestClient(create_app(settings)) as client:  # a restart
        assert _sessions(client.app.state.store) == []


@pytest.mark.parametrize("via", ["session", "header"])
def test_last_used_follows_browser_use_at_most_once_a_minute(app, keys, via):
    with TestClient(app) as client:
        if via == "session":
            login(client, keys["viewer"])
        else:
            client.headers["X-API-Key"] = keys["viewer"]
        assert key_row(client, "viewer-key")["last_used_at"] is None
        assert client.get("/runs").status_code == 200
        first = key_row(client, "viewer-key")["last_used_at"]
        assert first is not None and first > time.time() - 60
        assert client.get("/sessions").status_code == 200
        assert key_row(client, "viewer-key")["last_used_at"] == first  # no write per request
        # A minute later the next request refreshes it.
        client.app.state.store.write_sync(
            lambda db: db.execute(
                "update api_keys set last_used_at = ? where name = 'viewer-key'", [first - 61]
            )
        )
        assert client.get("/runs").status_code == 200
        assert key_row(client, "viewer-key")["last_used_at"] >= first
