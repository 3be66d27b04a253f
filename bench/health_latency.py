"""Benchmark: ``/api/health`` latency while the local model loads and while local runs stream.

Run from the repository root::

    .venv/bin/python bench/health_latency.py            # ~30 s on 2 cores
    .venv/bin/python bench/health_latency.py --runs 2   # fewer concurrent runs in part (b)

The real app (``create_app`` on a temporary data dir, no API keys in its
environment, so runs use the local SmolLM2 model) runs under uvicorn on
127.0.0.1 in a child process. One client in this process sends
``GET /api/health`` back to back and records each round trip:

- idle: before any run, for a baseline;
- (a) model load: from ``POST /api/runs`` of the first run (the model's
  worker process starts and loads the GGUF) until that run's first token
  arrives over its event stream;
- (b) streaming: while ``--runs`` local runs (4 by default) stream their
  answers, from their POST until the last one ended.

It prints p50/p99/max per phase and whether p99 meets the target (50 ms).
Exit status 1 if a run did not succeed. Nothing here leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.studio_server import studio_server  # noqa: E402

TARGET_P99_MS = 50.0
MODEL = "smollm2-135m"
PROMPT = "Count from 1 to 100, separated by commas."
# Provider keys the studio reads; the benchmark runs without any of them.
KEY_VARS = ("MISTRAL_API_KEY", "WANDB_API_KEY", "HF_TOKEN", "ELEVENLABS_API_KEY")


class Prober:
    """Sends ``GET /api/health`` back to back on a thread until stopped; keeps latencies (ms)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.samples: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    ok = client.get("/api/health").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.samples.append((time.perf_counter() - t0) * 1000)
                self.errors += 0 if ok else 1

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def first_token(client: httpx.Client, run_id: str) -> None:
    """Block until the run's event stream carries its first token (or the run ends)."""
    with client.stream("GET", f"/api/runs/{run_id}/events", timeout=300) as response:
        for line in response.iter_lines():
            if line.strip() in ("event: token", "event: run_finished", "event: run_failed"):
                return


def wait_end(client: httpx.Client, run_id: str) -> dict:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        run = client.get(f"/api/runs/{run_id}").json()["run"]
        if run["status"] in ("succeeded", "failed", "interrupted"):
            return run
        time.sleep(0.2)
    raise SystemExit(f"run {run_id} did not end")


def start_run(client: httpx.Client, max_tokens: int) -> str:
    body = {"prompt": PROMPT, "model": MODEL, "max_tokens": max_tokens, "tools": []}
    r = client.post("/api/runs", json=body)
    r.raise_for_status()
    return r.json()["run_id"]


def line(label: str, samples: list[float], seconds: float, errors: int) -> str:
    if len(samples) < 2:
        return f"  {label:<28} too few samples ({len(samples)})"
    q = statistics.quantiles(samples, n=100)
    verdict = "OK" if q[98] < TARGET_P99_MS else f"ABOVE {TARGET_P99_MS:g} ms"
    return (
        f"  {label:<28} p50 {q[49]:6.1f} ms   p99 {q[98]:6.1f} ms   max {max(samples):7.1f} ms"
        f"   ({len(samples)} requests in {seconds:.1f} s, {errors} errors)   {verdict}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=4, help="concurrent local runs in part (b)")
    parser.add_argument("--max-tokens", type=int, default=128, help="max_tokens of each run")
    parser.add_argument("--idle", type=int, default=300, help="health requests for the baseline")
    args = parser.parse_args()

    from app.auth.keys import create_key
    from app.store import Store

    tmp = Path(tempfile.mkdtemp(prefix="agentop-bench-health-"))
    try:
        store = Store(tmp / "agentop.db")
        _, key = store.write_sync(create_key, "bench", "member")
        store.close()
        with studio_server(tmp, unset=KEY_VARS) as url:
            print("AgentOp-Studio /api/health latency benchmark")
            print(f"  date      {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
            print(
                f"  machine   nproc {os.cpu_count()} ({len(os.sched_getaffinity(0))} usable), "
                f"{platform.machine()}, {platform.system()} {platform.release()}, "
                f"load average {os.getloadavg()[0]:.1f}"
            )
            print(f"  workload  model {MODEL}, max_tokens {args.max_tokens}, prompt {PROMPT!r}")

            results = []
            with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=60) as client:
                with httpx.Client(base_url=url, timeout=30) as idle:
                    samples = []
                    t0 = time.perf_counter()
                    for _ in range(args.idle):
                        t = time.perf_counter()
                        idle.get("/api/health")
                        samples.append((time.perf_counter() - t) * 1000)
                    results.append(("idle", samples, time.perf_counter() - t0, 0))

                with Prober(url) as probe:
                    t0 = time.perf_counter()
                    first = start_run(client, args.max_tokens)
                    first_token(client, first)
                    loaded_in = time.perf_counter() - t0
                results.append(("(a) model loading", probe.samples, loaded_in, probe.errors))
                runs = [wait_end(client, first)]

                with Prober(url) as probe:
                    t0 = time.perf_counter()
                    ids = [start_run(client, args.max_tokens) for _ in range(args.runs)]
                    runs += [wait_end(client, run_id) for run_id in ids]
                    took = time.perf_counter() - t0
                label = f"(b) {args.runs} local runs streaming"
                results.append((label, probe.samples, took, probe.errors))

            for label, samples, seconds, errors in results:
                print(line(label, samples, seconds, errors))
            tokens = sum(r["output_tokens"] or 0 for r in runs[1:])
            print(
                f"  first run: first token {loaded_in:.2f} s after POST (worker start + model load)"
            )
            print(f"  part (b): {tokens} tokens streamed in {took:.1f} s by {args.runs} runs")
            failed = [r for r in runs if r["status"] != "succeeded"]
            for r in failed:
                print(f"  run {r['id']} {r['status']}: {r['error']}")
            return 1 if failed else 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
