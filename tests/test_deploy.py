"""Shipping artefacts: the Dockerfile lints clean and its steps work in a venv;
the Kubernetes manifests validate against the Kubernetes schemas.

The Dockerfile's install step is replayed offline: ``uv sync --frozen --offline``
from uv.lock, with the wheels that ``./dev setup`` left in uv's cache, so no
test needs a package registry."""

import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

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
