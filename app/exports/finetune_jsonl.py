"""A Mistral fine-tuning JSONL built from chosen, failed or low-scored runs.

Each line is one conversation in Mistral's chat fine-tuning format::

    {"messages": [{"role": "user", "content": …},
                  {"role": "assistant", "tool_calls": [{"id": "Ab3dE6gH9", "type": "function",
                    "function": {"name": …, "arguments": "{…}"}}]},
                  {"role": "tool", "content": …, "tool_call_id": "Ab3dE6gH9"},
                  {"role": "assistant", "content": …}],
     "tools": [{"type": "function", "function": {…}}]}

Which runs go in, and with what final answer:

- a run someone *selected* goes in as recorded, or with its correction;
- a *failed* or *low-scored* run goes in only when a person gave a
  corrected answer, which replaces the final answer — training on the
  recorded one would teach the very mistake that made it fail.

Tool-call ids are rewritten to the nine alphanumerics Mistral requires,
consistently within a conversation. :func:`validate_line` checks the format;
the report says which runs were skipped and why.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.exports.records import (
    corrections,
    failed_runs,
    low_scored,
    run_ids,
    run_records,
    tool_call_list,
)

ROLES = ("system", "user", "assistant", "tool")
ID_RE = re.compile(r"^[A-Za-z0-9]{9}$")
_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def mistral_call_id(raw: str, run_id: str) -> str:
    if ID_RE.match(raw or ""):
        return raw
    digest = hashlib.sha256(f"{run_id}:{raw}".encode()).digest()
    return "".join(_ALPHABET[b % len(_ALPHABET)] for b in digest[:9])


def _defined_tools(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The tool definitions a run's trace reported (``gen_ai.tool.definitions``…), by name."""
    params = record.get("params")
    if isinstance(params, str):
        try:
            params = json.loads(params or "{}")
        except ValueError:
            params = {}
    definitions = params.get("tool_definitions") if isinstance(params, dict) else None
    found: dict[str, dict[str, Any]] = {}
    for spec in definitions if isinstance(definitions, list) else []:
        function = spec.get("function") if isinstance(spec, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            found[function["name"]] = {"type": "function", "function": function}
    return found


def _tool_spec(name: str, defined: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if name in defined:  # what the model was offered, as the run's trace says
        return defined[name]
    try:
        from agents.tools import load_tool

        return load_tool(name, {}).spec.to_mistral()
    except Exception:  # noqa: BLE001 - a tool from elsewhere (OTLP) has no local spec
        return {
            "type": "function",
            "function": {"name": name, "description": "", "parameters": {"type": "object"}},
        }


def conversation(record: dict[str, Any], correction: str | None) -> dict[str, Any] | None:
    """The run as one fine-tuning example, or None when it has no usable final answer."""
    run_id = record["id"]
    out: list[dict[str, Any]] = []
    tools: set[str] = set()
    for m in record["messages"]:
        role = m["role"]
        if role not in ROLES:
            continue
        if role == "assistant":
            calls = tool_call_list(m["tool_calls"])
            message: dict[str, Any] = {"role": "assistant"}
            if calls:
                message["tool_calls"] = [
                    {
                        "id": mistral_call_id(str(c.get("id") or i), run_id),
                        "type": "function",
                        "function": {
                            "name": c["function"]["name"],
                            "arguments": c["function"].get("arguments") or "{}",
                        },
                    }
                    for i, c in enumerate(calls)
                ]
                tools.update(c["function"]["name"] for c in calls)
            if m["content"] or not calls:
                message["content"] = m["content"]
            out.append(message)
        elif role == "tool":
            out.append(
                {
                    "role": "tool",
                    "content": m["content"] or "",
                    "tool_call_id": mistral_call_id(str(m["tool_call_id"] or ""), run_id),
                }
            )
        else:
            out.append({"role": role, "content": m["content"]})
    if correction is not None:
        # The corrected answer replaces the final answer (or supplies the missing one).
        if out and out[-1]["role"] == "assistant" and "tool_calls" not in out[-1]:
            out.pop()
        out.append({"role": "assistant", "content": correction})
    if not out or out[-1]["role"] != "assistant" or not out[-1].get("content"):
        return None
    line: dict[str, Any] = {"messages": out}
    if tools:
        defined = _defined_tools(record)
        line["tools"] = [_tool_spec(name, defined) for name in sorted(tools)]
    return line


def validate_line(line: Any) -> list[str]:
    """Problems that would make Mistral reject this line (empty when it is valid)."""
    if not isinstance(line, dict) or not isinstance(line.get("messages"), list):
        return ["a line must be an object with a messages list"]
    messages, errors, open_calls = line["messages"], [], set()
    if not messages:
        return ["messages is empty"]
    first = next((m for m in messages if isinstance(m, dict) and m.get("role") != "system"), None)
    if first is None or first.get("role") != "user":
        errors.append("the first message after the system prompt must be from the user")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            errors.append(f"message {i}: role must be one of {', '.join(ROLES)}")
            continue
        if "content" in m and not isinstance(m["content"], str):
            errors.append(f"message {i}: content must be a string")
        if m["role"] == "assistant":
            calls = m.get("tool_calls") or []
            if not calls and not m.get("content"):
                errors.append(f"message {i}: an assistant message needs content or tool_calls")
            for c in calls:
                if not ID_RE.match(str(c.get("id", ""))):
                    errors.append(f"message {i}: tool call id must be 9 letters or digits")
                try:
                    json.loads(c["function"]["arguments"])
                except (KeyError, TypeError, json.JSONDecodeError):
                    errors.append(f"message {i}: tool call arguments must be a JSON string")
                open_calls.add(c.get("id"))
            if m.get("weight") not in (None, 0, 1):
                errors.append(f"message {i}: weight must be 0 or 1")
        if m["role"] == "tool" and m.get("tool_call_id") not in open_calls:
            errors.append(f"message {i}: tool_call_id does not answer an earlier tool call")
    if messages[-1].get("role") != "assistant":
        errors.append("the last message must be from the assistant")
    return errors


def select_runs(
    db: Any, run_ids_: list[str] | None, failed: bool, below: float | None
) -> tuple[list[str], set[str]]:
    """(run ids in order, the ids that need a correction to be used)."""
    chosen = run_ids(db, run_ids_) if run_ids_ else []
    needs_correction: set[str] = set()
    if failed:
        needs_correction |= failed_runs(db)
    if below is not None or failed:
        needs_correction |= low_scored(db, below)
    needs_correction -= set(chosen)
    extra = [i for i in run_ids(db) if i in needs_correction and i not in chosen]
    return chosen + extra, needs_correction


def build_jsonl(
    db: Any,
    path: Path,
    run_ids_: list[str] | None,
    failed: bool,
    below: float | None,
    progress: Callable[[float, str], None] = lambda f, s: None,
) -> dict[str, Any]:
    """Write the JSONL; return counts and the reason each skipped run was left out."""
    ids, needs_correction = select_runs(db, run_ids_, failed, below)
    fixed = corrections(db)
    path.parent.mkdir(parents=True, exist_ok=True)
    written, skipped, corrected = 0, {}, 0
    with path.open("w", encoding="utf-8") as f:
        for n, record in enumerate(run_records(db, ids), 1):
            correction = fixed.get(record["id"])
            if record["id"] in needs_correction and correction is None:
                skipped[record["id"]] = "failed or low-scored, and no corrected answer"
                continue
            line = conversation(record, correction)
            problems = validate_line(line) if line else ["no final answer from the assistant"]
            if problems:
                skipped[record["id"]] = "; ".join(problems)
                continue
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
            written += 1
            corrected += correction is not None
            if n % 100 == 0:
                progress(0.1 + 0.8 * n / max(1, len(ids)), f"built {n} of {len(ids)} examples")
    return {
        "path": str(path),
        "examples": written,
        "corrected": corrected,
        "considered": len(ids),
        "skipped": skipped,
    }
