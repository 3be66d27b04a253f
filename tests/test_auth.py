"""Team access: roles per route class, revocation, sessions, CSRF, headers, rate limit."""

import httpx
import pytest
from bs4 import BeautifulSoup
from litestar.testing import TestClient

from tests.conftest import MISTRAL_MODEL, csrf, login

pytestmark = pytest.mark.both_backends


@pytest.fixture
def anon(app, keys):
    with TestClient(app) as test_client:
        yield test_client


def as_key(client, key):
    client.headers["X-API-Key"] = key
    return client


# (method, path, json body) per route class, and the lowest role allowed.
API_ROUTES = [
    ("GET", "/api/runs", None, "viewer"),
    ("GET", "/schema/openapi.json", None, "viewer"),
    ("POST", "/api/runs", {"prompt": "hi", "model": MISTRAL_MODEL}, "member"),
]
PAGE_ROUTES = [
    ("GET", "/", "viewer"),
    ("GET", "/runs", "viewer"),
    ("GET", "/runs/new", "viewer"),
    ("POST", "/runs", "member"),
    ("GET", "/settings/keys", "admin"),
    ("POST", "/settings/keys", "admin"),
]
ORDER = ["viewer", "member", "admin"]


@pytest.mark.parametrize("role", ORDER)
@pytest.mark.parametrize("method,path,body,needed", API_ROUTES)
def test_api_roles(anon, keys, role, method, path, body, needed):
    client = as_key(anon, keys[role])
    r = client.request(method, path, json=body)
    if ORDER.index(role) >= ORDER.index(needed):
        assert r.status_code in (200, 201), r.text
    else:
        assert r.status_code == 403, r.text
        assert f"needs the {needed} role" in r.json()["detail"]


@pytest.mark.parametrize("role", ORDER)
@pytest.mark.parametrize("method,path,needed", PAGE_ROUTES)
def test_page_roles(app, keys, role, method, path, needed):
    with TestClient(app) as client:
        login(client, keys[role])
        data = {"_csrf_token": csrf(client)}
        if path == "/runs":
            data.update(prompt="hi", model=MISTRAL_MODEL)
        if path == "/settings/keys":
            data.update(name=f"new-{role}", role="viewer")
        r = client.request(
            method, path, data=data if method == "POST" else None, follow_redirects=False
        )
        if ORDER.index(role) >= ORDER.index(needed):
            assert r.status_code in (200, 303), (role, path, r.text[:300])
        else:
            assert r.status_code == 403, (role, path, r.status_code)


def test_no_credentials(anon):
    assert anon.get("/api/health").status_code == 200
    assert anon.get("/static/studio.css").status_code == 200
    assert anon.get("/login").status_code == 200
    r = anon.get("/api/runs")
    assert r.status_code == 401 and "log in or send an API key" in r.json()["detail"]
    assert anon.get("/schema/openapi.json").status_code == 401
    r = anon.get("/runs", headers={"Accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fruns"
    r = anon.get("/runs", headers={"HX-Request": "true"})
    assert r.status_code == 401 and r.headers["HX-Redirect"].startswith("/login")
    assert as_key(anon, "ao_wrong").get("/api/runs").status_code == 401


def test_bearer_header_works(anon, keys):
    r = anon.get("/api/runs", headers={"Authorization": f"Bearer {keys['viewer']}"})
    assert r.status_code == 200


def test_revocation_takes_effect_at_once(app, keys):
    # Two browsers on one running app: one client whose cookie jar is swapped. Two
    # entered clients would start the app twice, and the first start's PostgreSQL relay
    # threads were left running after the test.
    with TestClient(app) as client:
        login(client, keys["member"])  # a browser session of the member key
        member = httpx.Cookies(client.cookies)
        client.cookies = httpx.Cookies()
        login(client, keys["admin"])
        admin = httpx.Cookies(client.cookies)

        client.cookies = member
        assert client.get("/runs").status_code == 200
        assert client.get("/api/runs", headers={"X-API-Key": keys["member"]}).status_code == 200
        client.cookies = admin
        r = client.post(
            "/settings/keys/revoke", data={"name": "member-key", "_csrf_token": csrf(client)}
        )
        assert r.status_code == 200
        row = BeautifulSoup(r.text, "html.parser").find("td", string="member-key").parent
        assert "revoked" in row.text
        client.cookies = member
        assert client.get("/api/runs", headers={"X-API-Key": keys["member"]}).status_code == 401
        r = client.get("/runs", headers={"Accept": "text/html"}, follow_redirects=False)
        assert r.status_code == 303  # the session died with its key


def test_session_cookie_flags_and_logout(app, keys):
    with TestClient(app) as client:
        client.get("/login")
        r = client.post(
            "/login",
            data={"key": keys["viewer"], "next": "/runs", "_csrf_token": csrf(client)},
            follow_redirects=False,
        )
        assert r.status_code == 303 and r.headers["location"] == "/runs"
        cookie = r.headers["set-cookie"]
        assert "agentop_session=" in cookie and "HttpOnly" in cookie
        assert "SameSite=lax" in cookie or "SameSite=Lax" in cookie
        assert "Secure" not in cookie  # plain http here
        assert client.get("/runs").status_code == 200
        r = client.post("/logout", data={"_csrf_token": csrf(client)}, follow_redirects=False)
        assert r.status_code == 303
        r = client.get("/runs", headers={"Accept": "text/html"}, follow_redirects=False)
        assert r.status_code == 303


def test_secure_cookie_behind_https_proxy(app, keys):
    with TestClient(app) as client:
        client.get("/login")
        r = client.post(
            "/login",
            data={"key": keys["viewer"], "_csrf_token": csrf(client)},
            headers={"X-Forwarded-Proto": "https"},
            follow_redirects=False,
        )
        assert "Secure" in r.headers["set-cookie"]


def test_login_rejects_bad_key_and_open_redirects(anon):
    anon.get("/login")
    r = anon.post("/login", data={"key": "nope", "_csrf_token": csrf(anon)})
    assert r.status_code == 401 and "not valid" in r.text
    page = anon.get("/login?next=//evil.example/x")
    assert 'value="/"' in page.text and "evil.example" not in page.text


def test_csrf_is_required_for_session_posts(page_client):
    r = page_client.post("/runs", data={"prompt": "hi", "model": MISTRAL_MODEL})
    assert r.status_code == 403
    r = page_client.post(
        "/runs", data={"prompt": "hi", "model": MISTRAL_MODEL}, headers={"x-csrftoken": "forged"}
    )
    assert r.status_code == 403
    r = page_client.post(
        "/runs",
        data={"prompt": "hi", "model": MISTRAL_MODEL},
        headers={"x-csrftoken": csrf(page_client), "HX-Request": "true"},
    )
    assert r.status_code == 204


def test_session_cookie_cannot_change_state_through_the_api(page_client):
    r = page_client.post("/api/runs", json={"prompt": "hi"})
    assert r.status_code == 401 and "API key" in r.json()["detail"]
    assert page_client.get("/api/runs").status_code == 200  # reading is fine


def test_login_attempts_are_rate_limited(app, keys):
    with TestClient(app) as client:
        client.get("/login")
        codes = [
            client.post("/login", data={"key": f"bad{i}", "_csrf_token": csrf(client)}).status_code
            for i in range(12)
        ]
        assert codes[:10] == [401] * 10 and codes[-1] == 429
        r = client.post("/login", data={"key": keys["admin"], "_csrf_token": csrf(client)})
        assert r.status_code == 429  # even a good key waits out the window
        assert client.get("/api/health").status_code == 200  # nothing else is limited


def test_security_headers(client):
    r = client.get("/")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "same-origin"
    assert client.get("/api/health").headers["x-content-type-options"] == "nosniff"


def test_keys_page_shows_a_new_key_once(page_client):
    r = page_client.post(
        "/settings/keys",
        data={"name": "ci-bot", "role": "member", "_csrf_token": csrf(page_client)},
    )
    page = BeautifulSoup(r.text, "html.parser")
    secret = page.select_one("#new-key").text.strip()
    assert secret.startswith("ao_") and len(secret) > 30
    later = page_client.get("/settings/keys").text
    assert secret not in later and secret[:11] in later  # the prefix stays visible
    r = page_client.post(
        "/settings/keys",
        data={"name": "ci-bot", "role": "member", "_csrf_token": csrf(page_client)},
    )
    assert r.status_code == 422 and "already exists" in r.text
    r = page_client.post(
        "/settings/keys", data={"name": "x", "role": "root", "_csrf_token": csrf(page_client)}
    )
    assert r.status_code == 422 and "role must be one of" in r.text


def test_keys_are_stored_hashed(settings, keys):
    files = [settings.db_path, settings.db_path.with_name(settings.db_path.name + "-wal")]
    raw = b"".join(f.read_bytes() for f in files if f.exists())
    for key in keys.values():
        assert key.encode() not in raw


def test_viewers_are_not_offered_forms_they_cannot_submit(app, keys):
    with TestClient(app) as client:
        login(client, keys["viewer"])
        for path in ("/", "/runs/new", "/datasets"):
            page = BeautifulSoup(client.get(path).text, "html.parser")
            assert page.select_one("form#run-form, form#upload-form, form#from-runs-form") is None
            assert "member role" in page.text
        assert (
            BeautifulSoup(client.get("/").text, "html.parser").select_one(
                "nav a[href='/settings/keys']"
            )
            is None
        )
