"""A throwaway PostgreSQL server for the tests: Debian's binaries, a cluster in a temp dir.

``start_postgres()`` runs ``initdb`` and ``pg_ctl start`` for a new cluster on a free
127.0.0.1 port, trusting local connections, and returns its URL and a stop function.
Nothing is mocked: it is the real server ``.ci/run`` installs (``apt-get install
postgresql``). ``initdb`` refuses to run as root, so under root (CI, this VM) the
cluster belongs to the ``postgres`` user the Debian package creates.

The binaries are looked up in ``AGENTOP_PG_BIN``, then ``/usr/lib/postgresql/<newest>/bin``,
then ``PATH``; :func:`postgres_bin` is None when there are none (tests then skip).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

USER = "agentop"


def postgres_bin() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, or None."""
    if env := os.environ.get("AGENTOP_PG_BIN"):
        return Path(env)
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_owner(argv: list[str]) -> list[str]:
    """Run as ``postgres`` when we are root (initdb and postgres refuse root)."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


def start_postgres(
    settings: dict[str, str] | None = None,
) -> tuple[str, Callable[[], None], Path]:
    """Start a new cluster; return ``(url, stop, cluster_dir)``.

    ``settings`` are extra ``postgres -c`` options. fsync is off unless asked for: the
    tests kill studios, never this server, and a crash of the studio is what they check.
    """
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL binaries not found (apt-get install postgresql)")
    # Not pytest's tmp_path: its parents are private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="agentop-pg-"))
    root.chmod(0o755)
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        for path in (root, sockets):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    subprocess.run(
        _as_owner(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8"]
            + ["--no-sync", "--no-instructions"]
        ),
        check=True,
        capture_output=True,
    )
    port = _free_port()
    options = {
        "port": str(port),
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": str(sockets),
        "fsync": "off",
        "max_connections": "200",
        **(settings or {}),
    }
    opts = " ".join(f"-c {k}={v}" for k, v in options.items())
    started = subprocess.run(
        _as_owner(
            [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log")]
            + ["-w", "-t", "60", "start"]
        ),
        capture_output=True,
        text=True,
    )
    if started.returncode != 0:
        log = (root / "log").read_text() if (root / "log").exists() else ""
        raise RuntimeError(f"pg_ctl start failed: {started.stdout}{started.stderr}{log}")
    subprocess.run(
        [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", USER, USER],
        check=True,
        capture_output=True,
    )

    def stop() -> None:
        subprocess.run(
            _as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)

    return f"postgresql://{USER}@127.0.0.1:{port}/{USER}", stop, root


def create_database(url: str, name: str) -> str:
    """Create database ``name`` on the server of ``url``; return its URL."""
    bin_dir = postgres_bin()
    assert bin_dir is not None
    host_port, _, _ = url.rpartition("/")
    port = host_port.rsplit(":", 1)[1]
    subprocess.run(
        [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", port, "-U", USER, name],
        check=True,
        capture_output=True,
    )
    return f"{host_port}/{name}"
