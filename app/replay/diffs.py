"""What changed between two runs: answers word by word, tool calls, totals, settings.

``diff_runs(a, b)`` takes two ``run_detail`` dicts (``app.store.runs``) and
returns a plain JSON-able dict; it is stored in ``diffs.data`` and rendered
by ``templates/partials/diff_body.html``. No HTML here: text is split into
segments (``equal`` / ``delete`` / ``insert`` / ``replace``) and the
template marks them up, escaping as it goes.

Word-level diffs use difflib on tokens that carry their trailing whitespace
("Paris, " becomes "Paris" and ", "), which keeps difflib fast (whitespace
alone would be a hugely popular token) and the highlights on whole words.
Long texts are trimmed of their common head and tail first, and at most
``MAX_TOKENS`` tokens per side are compared word by word; the rest is shown as
one replaced block, so a 100k-character answer costs well under a second.
"""

from __future__ import annotations

import json
import re
from difflib import SequenceMatcher
from typing import Any

from app.store.runs import run_params

MAX_TOKENS = 6000
DIFF_VERSION = 1
_TOKEN = re.compile(r"\w+\s*|[^\w\s]\s*|\s+")

METRICS = (
    ("input_tokens", "Tokens in"),
    ("output_tokens", "Tokens out"),
    ("total_tokens", "Tokens"),
    ("cost_usd", "Cost"),
    ("latency_ms", "Latency"),
    ("tool_calls", "Tool calls"),
    ("tool_errors", "Tool errors"),
)
PARAM_KEYS = (
    "model",
    "provider",
    "temperature",
    "max_tokens",
    "max_rounds",
    "system_prompt",
    "tools",
)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _segment(op: str, a: str, b: str) -> dict[str, str]:
    if op == "equal":
        return {"op": op, "text": a}
    if op == "delete":
        return {"op": op, "a": a}
    if op == "insert":
        return {"op": op, "b": b}
    return {"op": "replace", "a": a, "b": b}


def _merge(segments: list[dict[str, str]]) -> list[dict[str, str]]:
    """Join neighbours with the same op, and drop empty ones."""
    out: list[dict[str, str]] = []
    for seg in segments:
        if not any(seg.get(k) for k in ("text", "a", "b")):
            continue
        if out and out[-1]["op"] == seg["op"]:
            last = out[-1]
            for key in ("text", "a", "b"):
                if key in seg:
                    last[key] = last.get(key, "") + seg[key]
        else:
            out.append(dict(seg))
    return out


def text_ops(a: str | None, b: str | None) -> list[dict[str, str]]:
    """Segments that turn ``a`` into ``b``, word by word."""
    a, b = a or "", b or ""
    if a == b:
        return _merge([_segment("equal", a, a)])
    ta, tb = tokens(a), tokens(b)
    head = 0
    while head < min(len(ta), len(tb)) and ta[head] == tb[head]:
        head += 1
    tail = 0
    while tail < min(len(ta), len(tb)) - head and ta[-1 - tail] == tb[-1 - tail]:
        tail += 1
    mid_a, mid_b = ta[head : len(ta) - tail], tb[head : len(tb) - tail]
    segments = [_segment("equal", "".join(ta[:head]), "")]
    cut_a, cut_b = mid_a[MAX_TOKENS:], mid_b[MAX_TOKENS:]
    mid_a, mid_b = mid_a[:MAX_TOKENS], mid_b[:MAX_TOKENS]
    matcher = SequenceMatcher(None, mid_a, mid_b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        segments.append(_segment(op, "".join(mid_a[i1:i2]), "".join(mid_b[j1:j2])))
    if cut_a or cut_b:
        # Past the word-by-word budget: one block, still shown in full.
        segments.append(_segment("replace", "".join(cut_a), "".join(cut_b)))
    segments.append(_segment("equal", "".join(ta[len(ta) - tail :]) if tail else "", ""))
    return _merge(segments)


def side_texts(ops: list[dict[str, str]]) -> tuple[str, str]:
    """Both texts back from their segments."""
    a = "".join(s.get("text", s.get("a", "")) for s in ops)
    b = "".join(s.get("text", s.get("b", "")) for s in ops)
    return a, b


def text_stats(ops: list[dict[str, str]]) -> dict[str, Any]:
    def words(text: str) -> int:
        return len(re.findall(r"\w+", text))

    same = sum(words(s["text"]) for s in ops if s["op"] == "equal")
    removed = sum(words(s.get("a", "")) for s in ops if s["op"] in ("delete", "replace"))
    added = sum(words(s.get("b", "")) for s in ops if s["op"] in ("insert", "replace"))
    total = same * 2 + removed + added
    return {
        "words_same": same,
        "words_removed": removed,
        "words_added": added,
        # Share of words that match, as difflib's ratio does for sequences.
        "similarity": 1.0 if total == 0 else round(2 * same / total, 4),
    }


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def args_changes(a: Any, b: Any) -> list[dict[str, Any]]:
    """Argument keys added, removed or changed between two calls of the same tool."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return (
            []
            if _canonical(a) == _canonical(b)
            else [{"key": "", "change": "changed", "a": a, "b": b}]
        )
    changes = []
    for key in sorted(set(a) | set(b)):
        if key not in a:
            changes.append({"key": key, "change": "added", "a": None, "b": b[key]})
        elif key not in b:
            changes.append({"key": key, "change": "removed", "a": a[key], "b": None})
        elif _canonical(a[key]) != _canonical(b[key]):
            changes.append({"key": key, "change": "changed", "a": a[key], "b": b[key]})
    return changes


def _call_view(call: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": call.get("name"),
        "arguments": call.get("arguments"),
        "result": call.get("result"),
        "error": call.get("error"),
        "status": call.get("status"),
        "latency_ms": call.get("latency_ms"),
    }


def _pair(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    changes = args_changes(a.get("arguments"), b.get("arguments"))
    result_changed = (a.get("result") or "") != (b.get("result") or "")
    error_changed = (a.get("error") or "") != (b.get("error") or "")
    status_changed = a.get("status") != b.get("status")
    changed = bool(changes) or result_changed or error_changed or status_changed
    return {
        "change": "changed" if changed else "same",
        "name": a.get("name"),
        "a": _call_view(a),
        "b": _call_view(b),
        "args_changes": changes,
        "result_changed": result_changed,
        "result_ops": text_ops(a.get("result"), b.get("result")) if result_changed else [],
        "error_changed": error_changed,
        "status_changed": status_changed,
    }


def tool_call_ops(
    a_calls: list[dict[str, Any]], b_calls: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Align two sequences of tool calls by name; pair equal names, the rest are added/removed."""
    names_a = [c.get("name") for c in a_calls]
    names_b = [c.get("name") for c in b_calls]
    out: list[dict[str, Any]] = []
    for op, i1, i2, j1, j2 in SequenceMatcher(None, names_a, names_b, autojunk=False).get_opcodes():
        if op == "equal":
            out.extend(_pair(a, b) for a, b in zip(a_calls[i1:i2], b_calls[j1:j2], strict=False))
            continue
        # A replaced stretch holds different tools: report them as removed, then added.
        for a in a_calls[i1:i2]:
            out.append({"change": "removed", "name": a.get("name"), "a": _call_view(a), "b": None})
        for b in b_calls[j1:j2]:
            out.append({"change": "added", "name": b.get("name"), "a": None, "b": _call_view(b)})
    return out


def _number(run: dict[str, Any], key: str) -> float | None:
    if key == "total_tokens":
        return (run.get("input_tokens") or 0) + (run.get("output_tokens") or 0)
    if key == "cost_usd":
        return (run.get("cost_usd") or 0.0) + (run.get("extra_cost_usd") or 0.0)
    value = run.get(key)
    return None if value is None else value


def metric_deltas(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key, label in METRICS:
        va, vb = _number(a, key), _number(b, key)
        delta = None if va is None or vb is None else vb - va
        pct = None if delta is None or not va else round(100.0 * delta / va, 1)
        out.append({"key": key, "label": label, "a": va, "b": vb, "delta": delta, "pct": pct})
    return out


def _params(run: dict[str, Any]) -> dict[str, Any]:
    params = run_params(run)
    values = {key: params.get(key) for key in PARAM_KEYS}
    values["model"] = run.get("model") or values["model"]
    values["provider"] = run.get("provider")
    return values


def param_changes(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    pa, pb = _params(a), _params(b)
    return [
        {
            "key": key,
            "a": pa[key],
            "b": pb[key],
            "changed": _canonical(pa[key]) != _canonical(pb[key]),
        }
        for key in PARAM_KEYS
    ]


def diff_runs(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Compare two run details (``{"run", "tool_calls", ...}``); ``a`` is the base."""
    run_a, run_b = a["run"], b["run"]
    answer_ops = text_ops(run_a.get("response"), run_b.get("response"))
    calls = tool_call_ops(a.get("tool_calls") or [], b.get("tool_calls") or [])
    stats = text_stats(answer_ops)
    counts = {
        k: sum(1 for c in calls if c["change"] == k)
        for k in ("same", "changed", "added", "removed")
    }
    status = {
        "a": run_a.get("status"),
        "b": run_b.get("status"),
        "changed": run_a.get("status") != run_b.get("status"),
    }
    error = {
        "a": run_a.get("error"),
        "b": run_b.get("error"),
        "changed": (run_a.get("error") or "") != (run_b.get("error") or ""),
    }
    identical = (
        all(s["op"] == "equal" for s in answer_ops)
        and counts["changed"] == counts["added"] == counts["removed"] == 0
        and not status["changed"]
        and not error["changed"]
    )
    return {
        "version": DIFF_VERSION,
        "identical": identical,
        "answer": {"ops": answer_ops, **stats},
        "tool_calls": calls,
        "tool_call_counts": counts,
        "metrics": metric_deltas(run_a, run_b),
        "status": status,
        "error": error,
        "params": param_changes(run_a, run_b),
    }
