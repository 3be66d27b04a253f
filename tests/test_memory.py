"""Memory snapshots: the loop snapshots every step, the store keeps each, the viewer diffs them."""

from __future__ import annotations

import pytest
from bs4 import BeautifulSoup

from agents.events import MemorySnapshot, MessageAdded
from agents.tools import ToolOutput
from app.memory.snapshots import diff_snapshots
from tests.conftest import MISTRAL_MODEL, wait_for_run
from tests.fake_mistral import Reply
from tests.test_loop import ScriptedProvider, Turn, make_tool, run

pytestmark = pytest.mark.both_backends


def soup(response):
    return BeautifulSoup(response.text, "html.parser")


# --- the loop ------------------------------------------------------------------------------


def test_loop_snapshots_after_every_step():
    provider = ScriptedProvider(
        Turn(chunks=["Checking."], calls=[("echo", {"x": "1"}), ("boom", {})], usage=(10, 4)),
        Turn(chunks=["Done."], usage=(30, 2)),
    )

    def boom(args, settings):
        raise RuntimeError("nope")

    tools = [make_tool("echo", lambda a, s: ToolOutput("echoed")), make_tool("boom", boom)]
    result, sink = run(provider, tools, system_prompt="Be brief.", max_rounds=2)
    assert result == "Done."

    snaps = sink.of(MemorySnapshot)
    assert [s.step for s in snaps] == [0, 1, 2, 3]
    assert [s.label for s in snaps] == [
        "prompt",
        "round 1: model reply",
        "round 1: tool results",
        "round 2: model reply",
    ]
    # What the model would be sent next, at each step.
    assert [[m["role"] for m in s.messages] for s in snaps] == [
        ["system", "user"],
        ["system", "user", "assistant"],
        ["system", "user", "assistant", "tool", "tool"],
        ["system", "user", "assistant", "tool", "tool", "assistant"],
    ]
    # Exactly the messages the provider received on its next call.
    assert list(snaps[0].messages) == provider.calls[0]["messages"]
    assert list(snaps[2].messages) == provider.calls[1]["messages"]
    # Scratch state moves with the steps.
    assert snaps[0].scratch["round"] == 0 and snaps[0].scratch["input_tokens"] == 0
    assert snaps[1].scratch["pending_tool_calls"] == ["echo", "boom"]
    assert snaps[1].scratch["tools_offered"] == ["echo", "boom"]
    assert snaps[2].scratch["pending_tool_calls"] == []
    assert (snaps[2].scratch["tool_calls"], snaps[2].scratch["tool_errors"]) == (2, 1)
    assert snaps[3].scratch["input_tokens"] == 40 and snaps[3].scratch["output_tokens"] == 6
    assert snaps[3].scratch["tools_offered"] == []  # the last round (of 2) withholds tools
    assert snaps[0].scratch["max_rounds"] == 2
    assert snaps[3].scratch["finish_reason"] == "stop"
    # Each snapshot comes right after the message(s) of its step.
    types = sink.types()
    for snap in snaps[1:]:
        before = sink.events[sink.events.index(snap) - 1]
        assert isinstance(before, MessageAdded)
    assert types[-2:] == ["memory_snapshot", "run_finished"]


def test_snapshots_do_not_change_after_the_fact():
    provider = ScriptedProvider(Turn(chunks=["a"], calls=[("echo", {})]), Turn(chunks=["b"]))
    _, sink = run(provider, [make_tool("echo", lambda a, s: ToolOutput("e"))])
    first = sink.of(MemorySnapshot)[0]
    assert len(first.messages) == 1 and first.messages[0]["content"] == "hello"


def test_a_failed_model_call_leaves_the_prompt_snapshot():
    provider = ScriptedProvider(Turn(chunks=["x"], raise_exc=ConnectionError("down")))
    _, sink = run(provider)
    [snap] = sink.of(MemorySnapshot)
    assert snap.step == 0 and snap.label == "prompt"


# --- diffs ---------------------------------------------------------------------------------


def test_diff_marks_added_changed_dropped_and_scratch():
    before = {
        "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "tool", "content": "c"},
        ],
        "scratch": {"round": 1, "pending": ["x"], "gone": True},
    }
    after = {
        "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "B"}],
        "scratch": {"round": 2, "pending": ["x"], "new": 1},
    }
    diff = diff_snapshots(before, after)
    assert [m["state"] for m in diff["messages"]] == ["same", "changed"]
    assert [r["m"]["content"] for r in diff["removed"]] == ["c"]
    states = {s["key"]: s["state"] for s in diff["scratch"]}
    assert states == {"round": "changed", "pending": "same", "new": "added", "gone": "removed"}
    assert diff["changed_count"] == 1 and diff["added_count"] == 0 and diff["scratch_changed"] == 3
    first = diff_snapshots(None, after)
    assert [m["state"] for m in first["messages"]] == ["added", "added"]
    assert first["scratch_changed"] == 0  # the first step has nothing to compare with


# --- recorded through the app --------------------------------------------------------------


def _tool_run(client, fake_mistral) -> str:
    fake_mistral.add(
        Reply(
            text="Let me speak.",
            tool_calls=[{"name": "elevenlabs_speak", "arguments": {"text": "hi"}}],
        ),
        Reply(text="I could not speak.", usage=(40, 5)),
    )
    r = client.post("/api/runs", json={"prompt": "say hi", "model": MISTRAL_MODEL})
    run_id = r.json()["run_id"]
    assert wait_for_run(client, run_id)["run"]["status"] == "succeeded"
    return run_id


def test_every_step_is_recorded_and_served(client, fake_mistral):
    run_id = _tool_run(client, fake_mistral)
    body = client.get(f"/api/runs/{run_id}/memory").json()
    snaps = body["snapshots"]
    # prompt, model reply, tool results, model reply: one per step
    assert [s["step"] for s in snaps] == [0, 1, 2, 3]
    assert [s["message_count"] for s in snaps] == [1, 2, 3, 4]
    assert [s["added"] for s in snaps] == [[0], [1], [2], [3]]
    assert snaps[2]["scratch_changed"]["tool_errors"] == {"old": 0, "new": 1}
    assert snaps[3]["messages"][-1]["content"] == "I could not speak."
    # One row per memory_snapshot event in the log, and one per step of the loop.
    events = client.get(f"/api/runs/{run_id}/events").text
    assert events.count("event: memory_snapshot") == 4
    detail = client.get(f"/api/runs/{run_id}").json()
    llm_calls = sum(1 for s in detail["spans"] if s["kind"] == "llm")
    tool_rounds = len(
        {m["seq"] for m in detail["messages"] if m["role"] == "assistant" and m["tool_calls"]}
    )
    assert len(snaps) == 1 + llm_calls + tool_rounds
    assert client.get("/api/runs/nope/memory").status_code == 404


def test_run_page_memory_viewer_steps_through_snapshots(client, fake_mistral):
    run_id = _tool_run(client, fake_mistral)
    page = soup(client.get(f"/runs/{run_id}"))
    viewer = page.select_one("#memory #memory-view")
    assert [a.text for a in viewer.select("#memory-steps a")] == ["0", "1", "2", "3"]
    assert viewer.select_one("#memory-steps a[aria-current]").text == "3"  # the last step
    assert "round 2: model reply" in viewer.select_one(".memory-title").text
    added = viewer.select(".memory-messages li.mem-added")
    assert len(added) == 1 and "I could not speak." in added[0].text
    # htmx asks for another step: the fragment alone, with what changed since the step before.
    r = client.get(f"/runs/{run_id}/memory?step=2", headers={"HX-Request": "true"})
    assert r.status_code == 200 and "<html" not in r.text
    frag = soup(r)
    assert frag.select_one("#memory-steps a[aria-current]").text == "2"
    [tool_msg] = frag.select("li.mem-added")
    assert "ERROR" in tool_msg.text and "ELEVENLABS_API_KEY" in tool_msg.text
    changed = {row.select_one("code").text for row in frag.select("table.scratch tr.mem-changed")}
    assert {"tool_calls", "tool_errors", "pending_tool_calls"} <= changed
    assert frag.select_one(".step-prev")["hx-get"].endswith("step=1")
    assert frag.select_one(".step-next")["hx-get"].endswith("step=3")
    # Without htmx the same view comes as a whole page; a missing step shows the last.
    full = client.get(f"/runs/{run_id}/memory?step=99")
    assert (
        "<html" in full.text and soup(full).select_one("#memory-steps a[aria-current]").text == "3"
    )
    assert client.get("/runs/nope/memory").status_code == 404


def test_live_stream_renders_memory_steps(client, fake_mistral):
    run_id = _tool_run(client, fake_mistral)
    html = client.get(f"/runs/{run_id}/events").text
    assert "event: memory_snapshot" in html
    assert 'hx-swap-oob="beforeend:#memory-steps"' in html
    assert f'hx-get="/runs/{run_id}/memory?step=3"' in html


def test_memory_steps_are_linkable(client, fake_mistral):
    """Issue 16: ``?step=N`` selects a step on the memory page and in the run page's viewer
    (through ``run_page_extras``); picking a step pushes its URL; odd steps are handled."""
    run_id = _tool_run(client, fake_mistral)
    page = soup(client.get(f"/runs/{run_id}/memory?step=1"))
    assert page.select_one("#memory-steps a[aria-current]").text == "1"
    assert "round 1: model reply" in page.select_one(".memory-title").text
    links = {a.text: a for a in page.select("#memory-steps a")}
    assert links["2"]["hx-push-url"] == f"/runs/{run_id}/memory?step=2"
    assert page.select_one(".step-next")["hx-push-url"] == f"/runs/{run_id}/memory?step=2"
    assert page.select_one(".step-prev")["hx-push-url"] == f"/runs/{run_id}/memory?step=0"
    assert page.select_one("#memory-missing-step") is None

    # Picked on the run page (htmx says where it is): the run page's URL is pushed.
    r = client.get(
        f"/runs/{run_id}/memory?step=2",
        headers={"HX-Request": "true", "HX-Current-URL": f"http://testserver.local/runs/{run_id}"},
    )
    frag = soup(r)
    assert frag.select_one("#memory-steps a[aria-current]").text == "2"
    assert frag.select_one(".step-next")["hx-push-url"] == f"/runs/{run_id}?step=3#memory"
    assert {a["hx-push-url"] for a in frag.select("#memory-steps a")} == {
        f"/runs/{run_id}?step={n}#memory" for n in range(4)
    }
    # The run page's viewer names run-page URLs too.
    run_page = soup(client.get(f"/runs/{run_id}"))
    assert run_page.select_one("#memory .step-prev")["hx-push-url"] == (
        f"/runs/{run_id}?step=2#memory"
    )

    # The pushed run-page URL opens the viewer at that step.
    at_step = soup(client.get(f"/runs/{run_id}?step=1"))
    assert at_step.select_one("#memory #memory-steps a[aria-current]").text == "1"
    assert client.get(f"/runs/{run_id}?step=abc").status_code == 400

    # A step the run does not have: the last one, and a note that says so.
    missing = soup(client.get(f"/runs/{run_id}/memory?step=99"))
    assert missing.select_one("#memory-steps a[aria-current]").text == "3"
    assert " ".join(missing.select_one("#memory-missing-step").text.split()) == (
        "This run has no step 99; showing step 3, the last."
    )
    # Junk is a 400 that says what a step is, as a page for people and as the fragment's status.
    for junk in ("abc", "-1", "1.5", "99999999999999999999", "٣"):
        r = client.get(f"/runs/{run_id}/memory", params={"step": junk})
        assert r.status_code == 400, junk
        assert "step must be a whole number" in r.text, r.text[:300]
    assert client.get(f"/runs/{run_id}/memory?step=").status_code == 200  # empty: the last
    # Live steps jump the viewer without filling the history.
    html = client.get(f"/runs/{run_id}/events").text
    assert 'hx-trigger="load, click" hx-push-url="false"' in html
