"""Shipping artefacts: the Dockerfile lints clean and its steps work in a venv;
the Kubernetes manifests (the single-replica base and the PostgreSQL overlay
in deploy/k8s/postgres/) validate against the Kubernetes schemas and keep their
promises; compose.yaml follows the Compose Specification, and its proxy
(deploy/compose/nginx.conf) passes server-sent events through unbuffered.

The Dockerfile's install step is replayed offline: ``uv sync --frozen --offline``
from uv.lock, with the wheels that ``./dev setup`` left in uv's cache, so no
test needs a package registry."""

import ipaddress
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.conftest import free_port
from tests.receivers import wait_until

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.31.0"
# Left out of the base install: the extras' modules, and llm with openai (uv overrides).
OPTIONAL_MODULES = ("wandb", "huggingface_hub", "pyarrow", "elevenlabs", "grpc", "llm", "openai")


def hadolint() -> str:
    path = Path(sys.executable).parent / "hadolint"
    return str(path) if path.exists() else (shutil.which("hadolint") or "hadolint")


def test_dockerfile_lints_clean():
    r = subprocess.run([hadolint(), str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dockerfile_has_what_we_promise():
    text = (ROOT / "Dockerfile").read_text()
    assert text.count("FROM ") == 2  # multi-stage
    assert "COPY pyproject.toml uv.lock" in text and "USER 10001" in text
    assert text.count("uv sync --frozen --no-dev --extra all") == 2
    assert "HEALTHCHECK" in text and "/api/health" in text
    assert 'VOLUME ["/data"]' in text and "AGENTOP_DATA_DIR=/data" in text


def manifests():
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


@pytest.mark.parametrize("name,doc", manifests(), ids=lambda v: v if isinstance(v, str) else "")
def test_manifest_is_valid_kubernetes(name, doc):
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_deployment_is_one_replica_with_probes_limits_volume_and_secret():
    by_kind = {d["kind"]: d for _, d in manifests()}
    assert set(by_kind) >= {"Deployment", "Service", "PersistentVolumeClaim", "Secret"}
    deploy = by_kind["Deployment"]
    assert deploy["spec"]["replicas"] == 1 and deploy["spec"]["strategy"]["type"] == "Recreate"
    assert "single-writer" in (K8S / "deployment.yaml").read_text()
    pod = deploy["spec"]["template"]["spec"]
    [c] = pod["containers"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/api/health"
    # Liveness must not fail on a full disk (health is 503 then): a static file.
    assert c["livenessProbe"]["httpGet"]["path"].startswith("/static/")
    assert c["resources"]["limits"]["memory"] and c["resources"]["requests"]["cpu"]
    assert c["envFrom"][0]["secretRef"]["name"] == by_kind["Secret"]["metadata"]["name"]
    claim = [v for v in pod["volumes"] if "persistentVolumeClaim" in v][0]
    assert (
        claim["persistentVolumeClaim"]["claimName"]
        == (by_kind["PersistentVolumeClaim"]["metadata"]["name"])
    )
    kustom = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustom["resources"]) == sorted(
        p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"
    )


def uv() -> str | None:
    """uv from the venv (the lock's dev group installs it), else from PATH."""
    path = Path(sys.executable).parent / "uv"
    return str(path) if path.exists() else shutil.which("uv")


def test_dockerfile_steps_in_a_venv(tmp_path):
    """What the image does, done here: a frozen, non-editable install from uv.lock into a
    fresh venv (offline, from uv's cache), templates and static beside it via
    AGENTOP_HOME, serve, health check. The base install, without extras: it must
    serve on its own, and the extras must stay out of it."""
    uv_bin = uv()
    if uv_bin is None:
        pytest.skip("uv is not installed (./dev setup installs it)")
    venv = tmp_path / "venv"
    py = venv / "bin" / "python"
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("app", "agents"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    home = tmp_path / "home"
    shutil.copytree(ROOT / "templates", home / "templates")
    shutil.copytree(ROOT / "static", home / "static")
    r = subprocess.run(
        [
            uv_bin,
            "sync",
            "--frozen",
            "--offline",
            "--no-dev",
            "--no-editable",
            "--python",
            sys.executable,
        ],
        cwd=str(src),
        env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run(
        [
            str(py),
            "-c",
            "import importlib.util as u, sys; print([m for m in sys.argv[1:] if u.find_spec(m)])",
            *OPTIONAL_MODULES,
        ],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert r.stdout.strip() == "[]", r.stdout + r.stderr
    port = free_port()
    env = {**os.environ, "AGENTOP_HOME": str(home), "AGENTOP_DATA_DIR": str(tmp_path / "data")}
    server = subprocess.Popen(
        [str(venv / "bin" / "agentop"), "serve", "--port", str(port)],
        cwd=str(tmp_path),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def up() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                    assert r.status == 200
                    return True
            except OSError:
                assert server.poll() is None, server.stdout.read() if server.stdout else ""
                return False

        wait_until(up, 60, "the server to come up")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5) as r:
            assert "Log in" in r.read().decode()  # templates found through AGENTOP_HOME
        # The local model ships inside the installed package.
        r = subprocess.run(
            [
                str(py),
                "-c",
                "from agents.providers.local import smollm2_path;print(smollm2_path())",
            ],
            capture_output=True,
            text=True,
            cwd="/",
        )
        assert str(venv) in r.stdout
    finally:
        server.terminate()
        out = server.communicate(timeout=20)[0]
    assert "admin key was created" in out


# ---- Scaling out: the PostgreSQL overlay, compose.yaml and its proxy

OVERLAY = K8S / "postgres"
COMPOSE = ROOT / "compose.yaml"
NGINX_CONF = ROOT / "deploy" / "compose" / "nginx.conf"
# What the overlay's studio container may change from the base's; the rest is the base's.
SCALE_OUT_CHANGES = {"env", "readinessProbe", "lifecycle"}


def overlay_manifests():
    kustom = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    return [
        (name, doc)
        for name in kustom["resources"]
        for doc in yaml.safe_load_all((OVERLAY / name).read_text())
        if doc
    ]


def overlay(kind: str, name: str | None = None) -> dict:
    [doc] = [
        d
        for _, d in overlay_manifests()
        if d["kind"] == kind and name in (None, d["metadata"]["name"])
    ]
    return doc


def secret_keys(secret: dict) -> set[str]:
    return set(secret.get("stringData", {})) | set(secret.get("data", {}))


@pytest.mark.parametrize(
    "name,doc", overlay_manifests(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_overlay_manifest_is_valid_kubernetes(name, doc):
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_overlay_lists_every_manifest_and_no_volume_for_sqlite():
    kustom = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    assert sorted(kustom["resources"]) == sorted(
        p.name for p in OVERLAY.glob("*.yaml") if p.name != "kustomization.yaml"
    )
    assert "PersistentVolumeClaim" not in {d["kind"] for _, d in overlay_manifests()}
    assert "managed database" in (OVERLAY / "kustomization.yaml").read_text()


def test_overlay_runs_rolling_replicas_ready_on_the_database():
    deploy = overlay("Deployment")
    spec = deploy["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    pod = spec["template"]["spec"]
    [c] = pod["containers"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/api/ready"
    assert c["livenessProbe"]["httpGet"]["path"].startswith("/static/")
    assert pod["terminationGracePeriodSeconds"] >= 60
    # No volume to share between replicas: the data dir is each pod's scratch space.
    assert all("persistentVolumeClaim" not in v for v in pod["volumes"])
    # The database URL comes from a key of a Secret of the overlay.
    [url] = [e for e in c["env"] if e["name"] == "AGENTOP_DATABASE_URL"]
    ref = url["valueFrom"]["secretKeyRef"]
    assert ref["key"] in secret_keys(overlay("Secret", ref["name"]))


def test_overlay_studio_is_the_base_studio_but_for_scaling_out():
    """The overlay repeats the base's manifests (kustomize cannot patch a base that
    contains the overlay): they must not drift apart."""
    base = {(d["kind"], d["metadata"]["name"]): d for _, d in manifests()}
    for kind, name in [("Namespace", "agentop"), ("Secret", "agentop-keys")]:
        assert overlay(kind, name) == base[kind, name]
    assert overlay("Service", "agentop-studio") == base["Service", "agentop-studio"]
    mine = overlay("Deployment")["spec"]["template"]
    theirs = base["Deployment", "agentop-studio"]["spec"]["template"]
    assert mine["metadata"] == theirs["metadata"]
    [c], [b] = mine["spec"]["containers"], theirs["spec"]["containers"]
    assert {k: v for k, v in c.items() if k not in SCALE_OUT_CHANGES} == {
        k: v for k, v in b.items() if k not in SCALE_OUT_CHANGES
    }
    assert [e for e in c["env"] if e in b["env"]] == b["env"]
    assert c["readinessProbe"] == {
        **b["readinessProbe"],
        "httpGet": {"path": "/api/ready", "port": "http"},
    }
    assert mine["spec"]["securityContext"] == theirs["spec"]["securityContext"]


def test_pdb_keeps_a_studio_replica_and_only_studio_pods():
    pdb = overlay("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    selector = pdb["spec"]["selector"]["matchLabels"]
    studio_labels = overlay("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= studio_labels.items()
    db_labels = overlay("StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= db_labels.items()


def test_trial_postgres_has_its_volume_service_and_credentials():
    sts = overlay("StatefulSet")
    [claim] = sts["spec"]["volumeClaimTemplates"]
    [c] = sts["spec"]["template"]["spec"]["containers"]
    assert c["image"].startswith("postgres:16")
    assert claim["metadata"]["name"] in {m["name"] for m in c["volumeMounts"]}
    credentials = overlay("Secret", c["envFrom"][0]["secretRef"]["name"])
    assert {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"} <= secret_keys(credentials)
    service = overlay("Service", sts["spec"]["serviceName"])
    assert service["spec"]["selector"].items() <= sts["spec"]["selector"]["matchLabels"].items()
    # The studio's URL reaches this database with these credentials.
    url = urllib.parse.urlsplit(overlay("Secret", "agentop-database")["stringData"]["url"])
    creds = credentials["stringData"]
    assert (url.scheme, url.hostname, url.port) == ("postgresql", service["metadata"]["name"], 5432)
    assert (url.username, url.password, url.path) == (
        creds["POSTGRES_USER"],
        creds["POSTGRES_PASSWORD"],
        "/" + creds["POSTGRES_DB"],
    )
    assert "managed database" in (OVERLAY / "postgres.yaml").read_text()
    assert "managed database" in (OVERLAY / "README.md").read_text()


def test_overlay_renders_with_kustomize():
    """What `kubectl apply -k` applies: the kustomize built into kubectl renders it."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    r = subprocess.run([kubectl, "kustomize", str(OVERLAY)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rendered = [d for d in yaml.safe_load_all(r.stdout) if d]
    for doc in rendered:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        assert doc["kind"] == "Namespace" or doc["metadata"]["namespace"] == "agentop"
    assert sorted((d["kind"], d["metadata"]["name"]) for d in rendered) == sorted(
        (d["kind"], d["metadata"]["name"]) for _, d in overlay_manifests()
    )


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_matches_the_compose_specification():
    """The Compose Specification's JSON schema, as check-jsonschema ships it."""
    pytest.importorskip("check_jsonschema")
    r = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
        + [str(COMPOSE)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_compose_runs_postgres_two_studios_and_a_proxy():
    spec = compose()
    db, studio, proxy = (spec["services"][name] for name in ("db", "studio", "proxy"))
    assert db["image"].startswith("postgres:16") and "pg_isready" in str(db["healthcheck"])
    [volume] = [v.split(":")[0] for v in db["volumes"]]
    assert volume in spec["volumes"]  # a named volume, kept across `down`
    assert studio["build"] == "." and studio["deploy"]["replicas"] >= 2
    url = urllib.parse.urlsplit(studio["environment"]["AGENTOP_DATABASE_URL"])
    assert (url.scheme, url.hostname) == ("postgresql", "db")
    assert studio["depends_on"]["db"]["condition"] == "service_healthy"
    assert "/api/ready" in str(studio["healthcheck"]["test"])
    assert "ports" not in studio  # one address: the proxy's
    assert any(p.startswith("8000:") for p in proxy["ports"])
    assert proxy["depends_on"]["studio"]["condition"] == "service_healthy"
    [conf] = [v for v in proxy["volumes"] if "nginx.conf" in v]
    assert (ROOT / conf.split(":")[0]).resolve() == NGINX_CONF
    # The proxy's X-Forwarded-For is believed: it is on the network the studio trusts.
    [subnet] = spec["networks"]["default"]["ipam"]["config"]
    trusted = studio["environment"]["AGENTOP_TRUSTED_PROXIES"]
    assert ipaddress.ip_network(subnet["subnet"]).subnet_of(ipaddress.ip_network(trusted))


def test_proxy_config_says_what_sse_needs():
    text = NGINX_CONF.read_text()
    for directive in (
        "proxy_buffering off;",
        "proxy_http_version 1.1;",
        "proxy_pass $studio;",
        "set $studio http://studio:8000;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "client_max_body_size 16m;",  # OTLP's limit (app/ingest/api.py)
    ):
        assert directive in text, directive
    [timeout] = re.findall(r"proxy_read_timeout (\d+)h;", text)
    assert int(timeout) >= 1


def nginx() -> str:
    path = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(path).exists():
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    return path


def test_nginx_accepts_the_proxy_config(tmp_path):
    r = subprocess.run(
        [nginx(), "-t", "-q", "-e", "stderr", "-p", str(tmp_path), "-c", str(NGINX_CONF)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr


class GatedEvents(BaseHTTPRequestHandler):
    """A stream of two events; the second is sent only once the test has read the
    first through the proxy, so a proxy that buffers leaves the test waiting. It sends
    no X-Accel-Buffering header: the proxy's own config must not buffer."""

    def do_GET(self) -> None:
        server: Any = self.server
        server.forwarded_for = self.headers.get("X-Forwarded-For")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self.wfile.write(b"event: first\ndata: 1\n\n")
        self.wfile.flush()
        server.first_read.wait(30)
        self.wfile.write(b"event: second\ndata: 2\n\n")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def local_proxy_conf(tmp_path: Path, port: int, upstream_port: int) -> Path:
    """The proxy config with loopback addresses for the compose network's names."""
    text = NGINX_CONF.read_text()
    for old, new in (
        ("listen 8000;", f"listen 127.0.0.1:{port};"),
        ("listen 4317 http2;", f"listen 127.0.0.1:{free_port()} http2;"),
        ("http://studio:8000", f"http://127.0.0.1:{upstream_port}"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "nginx.conf"
    path.write_text(text)
    return path


def test_proxy_streams_events_as_they_come(tmp_path: Path) -> None:
    binary = nginx()
    upstream: Any = ThreadingHTTPServer(("127.0.0.1", 0), GatedEvents)
    upstream.first_read = threading.Event()
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = free_port()
    conf = local_proxy_conf(tmp_path, port, upstream.server_address[1])
    with (tmp_path / "nginx.log").open("w") as log:
        proxy = subprocess.Popen(
            [binary, "-e", "stderr", "-p", str(tmp_path), "-c", str(conf)]
            + ["-g", f"daemon off; pid {tmp_path / 'nginx.pid'};"],
            stderr=log,
        )
    try:

        def listening() -> bool:
            assert proxy.poll() is None, (tmp_path / "nginx.log").read_text()
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_until(listening, 10, "nginx to listen")
        url = f"http://127.0.0.1:{port}/api/runs/1/events"
        with urllib.request.urlopen(url, timeout=5) as r:
            assert r.headers["Content-Type"] == "text/event-stream"
            assert r.readline() == b"event: first\n"  # while the studio holds the second
            upstream.first_read.set()
            assert b"event: second" in r.read()
        assert upstream.forwarded_for == "127.0.0.1"
    finally:
        upstream.first_read.set()
        proxy.terminate()
        proxy.wait(10)
        upstream.shutdown()
