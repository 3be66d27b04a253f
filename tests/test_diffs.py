"""Diff logic: answers word by word, tool call sequences, totals, unicode, very long texts."""

import time

import pytest

from app.replay.diffs import args_changes, diff_runs, side_texts, text_ops, tool_call_ops
from app.web.render import make_environment

pytestmark = pytest.mark.both_backends


def detail(response="Paris.", tool_calls=(), status="succeeded", **run):
    base = {
        "id": run.pop("id", "r"),
        "status": status,
        "response": response,
        "model": "m1",
        "provider": "mistral",
        "params": {"temperature": 0.2, "max_tokens": 64, "tools": None},
        "input_tokens": 100,
        "output_tokens": 20,
        "cost_usd": 0.001,
        "latency_ms": 800.0,
        "tool_calls": len(tool_calls),
        "tool_errors": 0,
        "error": None,
    }
    base.update(run)
    return {"run": base, "tool_calls": list(tool_calls), "messages": [], "spans": []}


def call(name, arguments=None, result="ok", error=None):
    return {
        "name": name,
        "arguments": arguments or {},
        "result": result,
        "error": error,
        "status": "ok" if error is None else "error",
        "latency_ms": 5.0,
    }


def test_identical_runs():
    d = diff_runs(
        detail(tool_calls=[call("wandb_log", {"a": 1})]),
        detail(tool_calls=[call("wandb_log", {"a": 1})]),
    )
    assert d["identical"] is True
    assert d["answer"]["ops"] == [{"op": "equal", "text": "Paris."}]
    assert d["answer"]["similarity"] == 1.0
    assert [c["change"] for c in d["tool_calls"]] == ["same"]
    assert not d["status"]["changed"]
    assert all(m["delta"] == 0 for m in d["metrics"])


def test_changed_answer_is_word_level_and_reversible():
    a = "The capital of France is Paris. It has the Eiffel tower."
    b = "The capital of France is Paris! It has a famous Eiffel tower."
    ops = text_ops(a, b)
    assert side_texts(ops) == (a, b)
    changed = [s for s in ops if s["op"] != "equal"]
    assert {"op": "replace", "a": "the ", "b": "a famous "} in changed
    assert {"op": "replace", "a": ". ", "b": "! "} in changed
    # Whole words are highlighted, never part of one.
    assert all(s.get("text", "").strip() != "Pari" for s in ops)
    d = diff_runs(detail(response=a), detail(response=b))
    assert d["identical"] is False
    assert d["answer"]["words_added"] == 2 and d["answer"]["words_removed"] == 1
    assert 0.7 < d["answer"]["similarity"] < 1


def test_empty_and_missing_answers():
    assert text_ops(None, None) == []
    assert text_ops("", "hello") == [{"op": "insert", "b": "hello"}]
    assert text_ops("bye", None) == [{"op": "delete", "a": "bye"}]
    d = diff_runs(detail(response=None, status="failed", error="boom"), detail(response="ok"))
    assert d["status"] == {"a": "failed", "b": "succeeded", "changed": True}
    assert d["error"]["changed"] and not d["identical"]


def test_added_removed_and_changed_tool_calls():
    a = [
        call("hf_list_models", {"search": "bert", "limit": 5}, "bert-base"),
        call("wandb_log", {"metrics": {"acc": 0.9}}),
        call("elevenlabs_speak", {"text": "hi"}, None, "no key"),
    ]
    b = [
        call("hf_list_models", {"search": "roberta", "tags": "nlp"}, "roberta-base"),
        call("elevenlabs_speak", {"text": "hi"}, None, "no key"),
        call("ask_agent", {"question": "why?"}, "because"),
    ]
    ops = tool_call_ops(a, b)
    assert [(o["change"], o["name"]) for o in ops] == [
        ("changed", "hf_list_models"),
        ("removed", "wandb_log"),
        ("same", "elevenlabs_speak"),
        ("added", "ask_agent"),
    ]
    first = ops[0]
    assert {(c["key"], c["change"]) for c in first["args_changes"]} == {
        ("search", "changed"),
        ("limit", "removed"),
        ("tags", "added"),
    }
    assert first["result_changed"] and side_texts(first["result_ops"]) == (
        "bert-base",
        "roberta-base",
    )
    d = diff_runs(detail(tool_calls=a), detail(tool_calls=b))
    assert d["tool_call_counts"] == {"same": 1, "changed": 1, "added": 1, "removed": 1}
    assert not d["identical"]


def test_tool_call_that_starts_failing_is_changed():
    [op] = tool_call_ops(
        [call("wandb_log", {"x": 1})], [call("wandb_log", {"x": 1}, None, "timeout")]
    )
    assert op["change"] == "changed" and op["status_changed"] and op["error_changed"]
    assert op["args_changes"] == []


def test_args_changes_on_non_dict_arguments():
    assert args_changes([1, 2], [1, 2]) == []
    assert args_changes("a", "b") == [{"key": "", "change": "changed", "a": "a", "b": "b"}]
    assert args_changes({"n": {"x": 1, "y": 2}}, {"n": {"y": 2, "x": 1}}) == []  # key order


def test_unicode_text():
    a = "Café crème ☕ à Zürich — 東京は大きい。 🇫🇷 naïve"
    b = "Café noir ☕ à Zürich — 東京は小さい。 🇫🇷 naïve!"
    ops = text_ops(a, b)
    assert side_texts(ops) == (a, b)
    removed = "".join(s.get("a", "") for s in ops if s["op"] in ("delete", "replace"))
    added = "".join(s.get("b", "") for s in ops if s["op"] in ("insert", "replace"))
    assert "crème" in removed and "noir" in added
    assert "Zürich" not in removed and "☕" not in removed
    d = diff_runs(detail(response=a), detail(response=b))
    assert d["answer"]["words_added"] >= 2


def test_metric_deltas_and_params():
    d = diff_runs(
        detail(input_tokens=100, output_tokens=20, cost_usd=0.002, latency_ms=1000.0),
        detail(
            input_tokens=150,
            output_tokens=10,
            cost_usd=0.001,
            latency_ms=500.0,
            model="m2",
            params={"temperature": 0.9, "max_tokens": 64, "tools": []},
        ),
    )
    metrics = {m["key"]: m for m in d["metrics"]}
    assert metrics["input_tokens"]["delta"] == 50 and metrics["input_tokens"]["pct"] == 50.0
    assert metrics["total_tokens"]["a"] == 120 and metrics["total_tokens"]["b"] == 160
    assert metrics["cost_usd"]["delta"] == pytest.approx(-0.001)
    assert metrics["latency_ms"]["delta"] == -500.0 and metrics["latency_ms"]["pct"] == -50.0
    params = {p["key"]: p for p in d["params"]}
    assert params["model"]["changed"] and params["temperature"] == {
        "key": "temperature",
        "a": 0.2,
        "b": 0.9,
        "changed": True,
    }
    assert params["tools"]["changed"] and not params["max_tokens"]["changed"]


def test_very_long_texts_stay_fast_and_complete():
    words = [f"w{i % 997}" for i in range(40_000)]
    a = " ".join(words)
    changed = list(words)
    for i in range(0, len(changed), 37):
        changed[i] = "CHANGED"
    b = " ".join(changed)
    started = time.perf_counter()
    ops = text_ops(a, b)
    assert time.perf_counter() - started < 5
    assert side_texts(ops) == (a, b)  # nothing lost past the word-by-word budget
    assert sum(1 for s in ops if s["op"] == "replace") > 100


def test_long_identical_head_and_tail_are_cheap():
    head, tail = "intro " * 50_000, " outro" * 50_000
    ops = text_ops(head + "red" + tail, head + "blue" + tail)
    assert [s["op"] for s in ops] == ["equal", "replace", "equal"]
    assert ops[1] == {"op": "replace", "a": "red ", "b": "blue "}  # words keep their trailing space


def test_diff_template_escapes_model_output_and_folds_long_equal_text():
    env = make_environment()
    a = "<script>alert(1)</script> " + "same words " * 400 + "old"
    b = "<script>alert(1)</script> " + "same words " * 400 + "new <b>bold</b>"
    d = diff_runs(detail(id="a", response=a), detail(id="b", response=b))
    html = env.get_template("partials/diff_body.html").render(
        diff={"id": "x", "status": "ready", "data": d},
        run_a=detail(id="a", response=a)["run"],
        run_b=detail(id="b", response=b)["run"],
        csrf_token=lambda: "t",
    )
    assert "<script>alert(1)" not in html and "&lt;script&gt;" in html
    assert "<del>old</del>" in html and "<ins>new &lt;b&gt;bold&lt;/b&gt;</ins>" in html
    assert 'class="fold"' in html  # the long unchanged stretch is folded, not dropped
