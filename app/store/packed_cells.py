"""JSON cells stored deflated with a preset dictionary: a span's attributes in a fifth of the bytes.

An ingested span keeps every attribute, and those of a model call repeat
the same keys (``gen_ai.usage.input_tokens``…) and the same message
structure (``{"role": "user", "parts": [{"type": "text", "content": …``) in
every row. Plain deflate cannot find that repetition inside one short cell;
deflate primed with a dictionary of those strings does: on the ingest
benchmark an LLM span's attributes go from ~370 bytes of JSON to ~70.

A packed cell is a BLOB: one version byte, then raw deflate primed with the
dictionary of that version. The dictionary of a version never changes (rows
written with it must stay readable); a better one is a new version. Text
cells (older rows, native spans, short values) stay text: readers take both
(``unpack``).

Packing costs ~10 µs a cell with a small window and memory level (the
dictionary fits in the window): ingest does it on its decoding thread, not
on the writer.

Version 2 is for the event payloads an ingested run's log keeps
(``app.store.event_log.event_cell``: compact JSON without ``type`` and
``at``). They are built on the writer, so its compressor is primed once and
copied for each cell (``pack_event``), and only payloads long enough to gain
much are packed.
"""

from __future__ import annotations

import zlib

# The dictionary of version 1 (frozen): deflate looks back into it, so the strings
# most likely to repeat go last (nearest).
_DICTIONARY_V1 = (
    # Event payloads (``events.payload``), as ``encode_json`` writes them.
    b'{"type": "run_started", "at": , "model": "", "provider": "", "params": {"trace_id": "'
    b'", "service": ""}, "external_spans": true}'
    b'{"type": "tool_call_started", "at": , "call_id": "", "name": "", "arguments": {}}'
    b'{"type": "tool_call_finished", "at": , "call_id": "", "name": "", "arguments": {},'
    b' "result": null, "error": null, "latency_ms": , "cost_lines": [], "span_id": "",'
    b' "_moved": ["result"]}'
    b'{"type": "message", "at": , "role": "assistant", "content": null, "tool_calls": [],'
    b' "tool_call_id": null, "name": null, "_moved": ["content"]}'
    b'{"type": "llm_call_finished", "at": , "model": "", "provider": "", "input_tokens": ,'
    b' "output_tokens": , "latency_ms": , "round": 0, "finish_reason": null, "span_id": "",'
    b' "cost_usd": , "cost_status": "priced"}'
    b'{"type": "run_finished", "at": , "response": ""}'
    # Span attributes, resources and scopes (compact JSON, ``app.store.spans.stored_cell``).
    b'"links":[],"events":[],"dropped_attributes_count":0,"telemetry.sdk.language":"python",'
    b'"telemetry.sdk.name":"opentelemetry","telemetry.sdk.version":"1.'
    b'"openinference.span.kind":"LLM","llm.model_name":"","llm.provider":"","llm.system":"'
    b'"llm.token_count.prompt":,"llm.token_count.completion":,"llm.token_count.total":'
    b'"llm.input_messages.0.message.role":"system","llm.input_messages.0.message.content":"'
    b'"llm.output_messages.0.message.role":"assistant","llm.output_messages.0.message.content":"'
    b'"llm.invocation_parameters":"{\\"temperature\\": ","input.value":"","input.mime_type":'
    b'"application/json","output.value":"","output.mime_type":"text/plain","session.id":"'
    b'"tool.name":"","tool.parameters":"","gen_ai.system":"","gen_ai.conversation.id":"'
    b'"gen_ai.agent.name":"","gen_ai.request.temperature":,"gen_ai.request.max_tokens":'
    b'"gen_ai.response.finish_reasons":["stop"],"gen_ai.response.id":"'
    b'"gen_ai.tool.definitions":"[{\\"type\\": \\"function\\", \\"function\\": {\\"name\\": \\"'
    b'"gen_ai.operation.name":"execute_tool","gen_ai.tool.name":"","gen_ai.tool.type":"function",'
    b'"gen_ai.tool.call.id":"","gen_ai.tool.call.arguments":"{\\"","gen_ai.tool.call.result":"'
    b'{"service.name":"","service.version":"'
    b'{"name":"","version":"","attributes":{}}'
    b'"tool_call_id\\": \\"", \\"tool_calls\\": [{\\"id\\": \\"", \\"type\\": \\"tool_call\\",'
    b' \\"arguments\\": {\\"'
    b'"finish_reason\\": \\"stop\\"}]'
    b'\\"}]}, {\\"role\\": \\"user\\", \\"parts\\": [{\\"type\\": \\"text\\", \\"content\\": \\"'
    b'\\"}]}, {\\"role\\": \\"assistant\\", \\"parts\\": [{\\"type\\": \\"text\\", \\"content\\": \\"'
    b'{"gen_ai.operation.name":"chat","gen_ai.provider.name":"","gen_ai.request.model":"'
    b'","gen_ai.response.model":"","gen_ai.usage.input_tokens":,"gen_ai.usage.output_tokens":'
    b',"gen_ai.output.messages":"[{\\"role\\": \\"assistant\\", \\"parts\\": [{\\"type\\":'
    b' \\"text\\", \\"content\\": \\"'
    b',"gen_ai.input.messages":"[{\\"role\\": \\"user\\", \\"parts\\": [{\\"type\\":'
    b' \\"text\\", \\"content\\": \\"'
)
# Version 2 (frozen): event payloads as ``app.store.event_log.event_cell`` writes them.
_DICTIONARY_V2 = (
    b'{"role":"user","content":null,"tool_calls":[],"tool_call_id":null,"name":null,'
    b'"_moved":["content"]}'
    b'{"model":"","provider":"","params":{"trace_id":"","service":""},"external_spans":true}'
    b'{"error":"","_moved":["response"]}{"response":null,"_moved":["response"]}'
    b'{"call_id":"","name":"","arguments":{}}'
    b'{"call_id":"","name":"","arguments":{},"result":null,"error":null,"latency_ms":,'
    b'"cost_lines":[],"span_id":"","_moved":["result"]}'
    b'{"model":"mistral-small-latest","provider":"mistral","input_tokens":,"output_tokens":,'
    b'"latency_ms":,"round":0,"finish_reason":null,"span_id":"","cost_usd":,'
    b'"cost_status":"priced"}'
)
_DICTIONARIES = {1: _DICTIONARY_V1, 2: _DICTIONARY_V2}
VERSION = 1
EVENT_VERSION = 2
# Raw deflate with a 4 KiB window (the dictionary fits) and little memory: setting
# up the compressor is most of the cost of packing a short cell.
_WBITS = -12
_MEM_LEVEL = 4
# Shorter text is kept as it is: packing would not pay for its version byte.
MIN_PACKED = 16


_PACKER = zlib.compressobj(
    6, zlib.DEFLATED, _WBITS, _MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY, _DICTIONARY_V1
)


def pack(text: str) -> str | bytes:
    """``text`` as a cell: packed when that makes it smaller, else the text itself."""
    if len(text) < MIN_PACKED:
        return text
    packer = _PACKER.copy()  # the same bytes as a compressor primed anew, in less time
    raw = text.encode()
    packed = bytes([VERSION]) + packer.compress(raw) + packer.flush()
    return packed if len(packed) < len(raw) else text


_EVENT_PACKER = zlib.compressobj(
    6, zlib.DEFLATED, _WBITS, _MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY, _DICTIONARY_V2
)


def pack_event(raw: bytes) -> bytes:
    """An event payload's JSON (UTF-8) packed with the version 2 dictionary, if smaller.

    A copy of a compressor primed once costs less than priming a new one.
    """
    packer = _EVENT_PACKER.copy()
    packed = bytes([EVENT_VERSION]) + packer.compress(raw) + packer.flush()
    return packed if len(packed) < len(raw) else raw


def unpack(cell: bytes) -> str | None:
    """The text of a packed cell; None when it is not one (a corrupt or foreign BLOB)."""
    dictionary = _DICTIONARIES.get(cell[0]) if cell else None
    if dictionary is None:
        return None
    try:
        unpacker = zlib.decompressobj(_WBITS, zdict=dictionary)
        return (unpacker.decompress(cell[1:]) + unpacker.flush()).decode()
    except (zlib.error, UnicodeDecodeError):
        return None
