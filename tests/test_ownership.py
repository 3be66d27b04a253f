"""Runs have an owner: a server and the ``agentop`` CLI sharing one data dir.

A real server (uvicorn on loopback) and the CLI as a user runs it (a
subprocess with ``--data-dir``) on the same data: the CLI hands its runs to
the server when one is up, runs them itself when none is, and neither ever
sweeps or writes the other's runs. The fake Mistral server's delayed replies
keep a run in flight while the other side acts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from app.main import create_app
from app.store import Store
from app.store.event_log import events_after
from app.store.processes import CLI, SERVE, heartbeat, register_process
from app.store.runs import create_run
from tests.conftest import MISTRAL_MODEL, LiveServer, api_client, free_port
from tests.fake_mistral import Reply
from tests.receivers import wait_until
from tests.test_cli import AGENTOP, run_cli

# About ten seconds of streaming: longer than a CLI command takes to start and finish.
SLOW = Reply(text="slow " * 50, chunk_size=5, delay_s=0.2)


@contextmanager
def serving(settings: Any, admin_key: str) -> Iterator[httpx.Client]:
    """``agentop serve`` on loopback, registered with its URL; a client with the admin key."""
    server = LiveServer(create_app(settings))
    settings.server_url = server.url
    with server, httpx.Client(base_url=server.url, headers={"X-API-Key": admin_key}) as http:
        yield http


def query(settings: Any, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    store = Store(settings.db_path)
    try:
        return store.read_sync(lambda db: [dict(r) for r in db.execute(sql, params or [])])
    finally:
        store.close()


def read_run(settings: Any, run_id: str) -> dict[str, Any]:
    [run] = query(settings, "select * from runs where id = ?", [run_id])
    return run


def assert_whole_log(settings: Any, run_id: str) -> None:
    """One writer: the events are numbered 1..n without a gap, ending with the run's end
    (read as the stream replays them: a model call's tokens are stored as one row)."""
    store = Store(settings.db_path)
    try:
        events = store.read_sync(events_after, run_id, 0, 100_000)
    finally:
        store.close()
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "run_finished"
    assert read_run(settings, run_id)["last_seq"] == len(events)


def cli_env(fake_mistral: Any) -> dict[str, str]:
    return {"MISTRAL_API_KEY": "k", "MISTRAL_SERVER_URL": fake_mistral.url}


class ListWatcher:
    """A browser's live run list (``/runs/live``): every SSE event it receives, as text."""

    def __init__(self, url: str, key: str) -> None:
        self.events: list[str] = []
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._read, args=(url, key), daemon=True)
        self.thread.start()
        assert self.ready.wait(10), "the live list did not open"

    def _read(self, url: str, key: str) -> None:
        lines: list[str] = []
        try:
            # Keep-alives come every 15 s: a read may wait longer than httpx's default 5 s
            # (a CLI starting on a busy machine), and a timeout would end the watch.
            timeout = httpx.Timeout(10.0, read=60.0)
            with httpx.stream(
                "GET", f"{url}/runs/live", headers={"X-API-Key": key}, timeout=timeout
            ) as r:
                self.ready.set()
                for line in r.iter_lines():
                    if line:
                        lines.append(line)
                    elif lines:
                        self.events.append("\n".join(lines))
                        lines = []
        except httpx.HTTPError:
            pass  # the server stopped under the stream at the end of the test

    def saw(self, run_id: str, text: str) -> bool:
        return any(f"run-row-{run_id}" in e and text in e for e in list(self.events))


def test_cli_run_goes_through_the_server_and_spares_its_run_in_flight(settings, keys, fake_mistral):
    fake_mistral.add(SLOW)
    with serving(settings, keys["admin"]) as http:
        slow_id = http.post("/api/runs", json={"prompt": "long", "model": MISTRAL_MODEL}).json()[
            "run_id"
        ]
        wait_until(lambda: read_run(settings, slow_id)["status"] == "running", timeout=30)
        browser = ListWatcher(str(http.base_url), keys["admin"])

        r = run_cli("run", "Capital of France?", "--data-dir", str(settings.data_dir))

        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "Echo: Capital of France?"
        assert "[succeeded]" in r.stderr and f"on {http.base_url}".rstrip("/") in r.stderr
        [cli_run] = query(settings, "select * from runs where source = 'cli'")
        # The server ran it: its process owns it, and a browser watching saw it live.
        [server] = query(settings, "select * from processes where kind = ?", [SERVE])
        assert cli_run["owner"] == server["id"] and cli_run["status"] == "succeeded"
        assert wait_until(lambda: browser.saw(cli_run["id"], "status-succeeded"), timeout=30)
        # The server's run was in flight all along and was not touched.
        assert read_run(settings, slow_id)["status"] == "running"
        detail = wait_until(
            lambda: (d := http.get(f"/api/runs/{slow_id}").json())["run"]["ended_at"] and d,
            timeout=30,
        )
        assert detail["run"]["status"] == "succeeded"
        assert detail["run"]["response"] == "slow " * 50
        assert cli_run["started_at"] < detail["run"]["ended_at"]
        assert_whole_log(settings, slow_id)
        assert_whole_log(settings, cli_run["id"])
    # The CLI's one-off key is gone, and so is every process row after a clean stop.
    names = [k["name"] for k in query(settings, "select name from api_keys")]
    assert sorted(names) == sorted(f"{role}-key" for role in keys)
    assert query(settings, "select * from processes") == []


def test_cli_replay_goes_through_the_server(settings, keys, fake_mistral):
    with serving(settings, keys["admin"]) as http:
        original = http.post("/api/runs", json={"prompt": "hi", "model": MISTRAL_MODEL}).json()
        wait_until(lambda: read_run(settings, original["run_id"])["ended_at"], timeout=30)

        r = run_cli(
            "replay",
            original["run_id"],
            "--temperature",
            "0.5",
            "--data-dir",
            str(settings.data_dir),
        )

        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "Echo: hi"
        assert f"on {http.base_url}".rstrip("/") in r.stderr
        assert "settings changed  temperature" in r.stderr
        [replay] = query(
            settings, "select * from runs where parent_run_id = ?", [original["run_id"]]
        )
        assert replay["source"] == "cli" and replay["parent_kind"] == "replay"
        assert fake_mistral.requests[-1]["temperature"] == 0.5
        missing = run_cli("replay", "nope", "--data-dir", str(settings.data_dir))
        assert missing.returncode == 2 and "not found" in missing.stderr


def test_cli_uses_agentop_api_key_when_set(settings, keys, fake_mistral):
    with serving(settings, keys["admin"]):
        r = run_cli(
            "run",
            "hi",
            "--data-dir",
            str(settings.data_dir),
            env_extra={"AGENTOP_API_KEY": keys["viewer"]},
        )
    # A viewer may not start runs: the server's answer, and no key of its own was made.
    assert r.returncode == 2 and "HTTP 403" in r.stderr, r.stderr
    assert query(settings, "select * from runs") == []
    assert not query(settings, "select * from api_keys where name like 'agentop-cli:%'")


def test_without_a_server_the_cli_runs_here_and_sweeps_nothing(settings, fake_mistral):
    store = Store(settings.db_path)
    gone = time.time() - 600
    # A server that crashed: a stale heartbeat, a URL nobody answers on, a run it left.
    dead_url = f"http://127.0.0.1:{free_port()}"
    store.write_sync(
        register_process,
        {"id": "dead", "pid": 1, "host": "h", "kind": SERVE, "url": dead_url,
         "started_at": gone, "heartbeat_at": gone},
    )  # fmt: skip
    store.write_sync(create_run, {"id": "left", "status": "running", "owner": "dead"})
    store.close()

    r = run_cli(
        "run", "hello", "--data-dir", str(settings.data_dir), env_extra=cli_env(fake_mistral)
    )

    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "Echo: hello"
    assert " on http" not in r.stderr and "did not answer" not in r.stderr
    [run] = query(settings, "select * from runs where source = 'cli'")
    assert run["status"] == "succeeded" and run["owner"] not in (None, "dead")
    # Only a server sweeps: the dead server's run and row wait for the next `serve`.
    assert read_run(settings, "left")["status"] == "running"
    assert [p["id"] for p in query(settings, "select id from processes")] == ["dead"]


def test_a_server_starting_leaves_an_in_process_cli_run_alone(settings, keys, fake_mistral):
    fake_mistral.add(SLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MISTRAL_", "AGENTOP_"))}
    cli = subprocess.Popen(
        [*AGENTOP, "run", "long", "--data-dir", str(settings.data_dir)],
        env={**env, **cli_env(fake_mistral)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        run = wait_until(
            lambda: (
                (rows := query(settings, "select * from runs where status = 'running'")) and rows[0]
            ),
            timeout=30,
        )
        [owner] = query(settings, "select * from processes where id = ?", [run["owner"]])
        assert owner["kind"] == CLI and owner["pid"] == cli.pid

        with api_client(settings, keys["admin"]) as client:
            # The start-up sweep has run: the CLI's run is still its own.
            assert client.get(f"/api/runs/{run['id']}").json()["run"]["status"] == "running"
        out, err = cli.communicate(timeout=120)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 0, err
    assert out.strip() == ("slow " * 50).strip()
    assert read_run(settings, run["id"])["status"] == "succeeded"
    assert_whole_log(settings, run["id"])
    assert query(settings, "select * from processes") == []


def test_serve_start_sweeps_only_runs_whose_owner_is_gone(settings, keys):
    store = Store(settings.db_path)
    now = time.time()
    for pid, beat in (("stale", now - 60), ("fresh", now)):
        store.write_sync(
            register_process,
            {"id": pid, "pid": 1, "host": "h", "kind": CLI, "url": None,
             "started_at": now - 120, "heartbeat_at": beat},
        )  # fmt: skip
    for run_id, owner, status in (
        ("of-stale", "stale", "running"),
        ("of-fresh", "fresh", "running"),
        ("legacy", None, "queued"),
    ):
        store.write_sync(create_run, {"id": run_id, "status": status, "owner": owner})
    store.close()

    with api_client(settings, keys["admin"]) as client:
        status = {r: client.get(f"/api/runs/{r}").json()["run"]["status"] for r in ("of-stale", "of-fresh", "legacy")}  # fmt: skip
        assert status == {"of-stale": "interrupted", "of-fresh": "running", "legacy": "interrupted"}
        kinds = {p["id"]: p["kind"] for p in query(settings, "select * from processes")}
        assert kinds.pop("fresh") == CLI and "stale" not in kinds
        assert list(kinds.values()) == [SERVE]  # the server itself, while it runs
    assert [p["id"] for p in query(settings, "select id from processes")] == ["fresh"]


def test_a_heartbeat_renews_the_lease_and_comes_back_after_a_sweep(db):
    row = {"id": "p", "pid": 1, "host": "h", "kind": CLI, "url": None,
           "started_at": 1.0, "heartbeat_at": 1.0}  # fmt: skip
    db.write_sync(register_process, row)
    assert db.write_sync(heartbeat, row, 50.0) is True
    db.write_sync(lambda d: d.execute("delete from processes"))
    assert db.write_sync(heartbeat, row, 60.0) is False  # it had been taken for dead
    [back] = db.read_sync(lambda d: [dict(r) for r in d.execute("select * from processes")])
    assert back["heartbeat_at"] == 60.0


def test_ctrl_c_stops_following_and_the_run_goes_on(settings, keys, fake_mistral):
    fake_mistral.add(Reply(text="slow " * 20, chunk_size=5, delay_s=0.2))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MISTRAL_", "AGENTOP_"))}
    with serving(settings, keys["admin"]) as http:
        cli = subprocess.Popen(
            [*AGENTOP, "run", "long", "--data-dir", str(settings.data_dir)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # Ctrl-C as in a terminal: a suite started in the background (`cmd &` in a
            # script) ignores SIGINT, children inherit that, and Python then keeps it off.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            assert cli.stderr is not None
            header = cli.stderr.readline()  # "run ID · model (provider) · on URL"
            assert header.startswith("run "), header
            cli.send_signal(signal.SIGINT)
            out, err = cli.communicate(timeout=60)
        finally:
            if cli.poll() is None:
                cli.kill()
        assert cli.returncode == 130, err
        assert "the run goes on in the studio" in err and "Traceback" not in err
        run_id = header.split()[1]
        detail = wait_until(
            lambda: (d := http.get(f"/api/runs/{run_id}").json())["run"]["ended_at"] and d,
            timeout=30,
        )
        assert detail["run"]["status"] == "succeeded"
    assert not query(settings, "select * from api_keys where name like 'agentop-cli:%'")


def test_a_registered_server_that_does_not_answer_means_running_here(settings, fake_mistral):
    store = Store(settings.db_path)
    now = time.time()
    store.write_sync(
        register_process,
        {"id": "mute", "pid": 1, "host": "h", "kind": SERVE,
         "url": f"http://127.0.0.1:{free_port()}", "started_at": now, "heartbeat_at": now},
    )  # fmt: skip
    store.close()

    r = run_cli(
        "run", "hello", "--data-dir", str(settings.data_dir), env_extra=cli_env(fake_mistral)
    )

    assert r.returncode == 0, r.stderr
    assert "did not answer; running here" in r.stderr and r.stdout.strip() == "Echo: hello"
    [run] = query(settings, "select * from runs")
    assert run["source"] == "cli" and run["status"] == "succeeded" and run["owner"] != "mute"
    assert not query(settings, "select * from api_keys where name like 'agentop-cli:%'")
