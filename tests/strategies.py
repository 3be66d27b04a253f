"""Hypothesis strategies for the edges: odd JSON values, mutations, OTLP trace exports.

OTLP requests are built from the real ``opentelemetry.proto`` message types
with any field missing, attribute values of every kind (text, bool, 64-bit
ints, NaN and infinite doubles, bytes, arrays, key-value lists) and odd text.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from google.protobuf.json_format import MessageToDict
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

# --- Values --------------------------------------------------------------------------------

EXTREME_INTS = st.sampled_from([0, -1, 2**31, 2**53 + 1, 2**63 - 1, -(2**63), 2**64, 10**30])
ODD_TEXT = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "a\x00b",
            "\ud800",
            "\udfff lone",
            "\u202egnp.exe",
            "<script>alert(1)</script>",
            "NaN",
            "9223372036854775807",
            "-1e999",
        ]
    ),
)
ODD_TEXT = ODD_TEXT | st.builds(lambda n: "x" * n, st.just(100_000))  # a short repr
PROTO_TEXT = ODD_TEXT.filter(lambda s: not any("\ud800" <= c <= "\udfff" for c in s))
NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70), EXTREME_INTS, st.floats(allow_nan=False, allow_infinity=False)
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | NUMBERS | ODD_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ODD_TEXT, inner, max_size=3),
    max_leaves=8,
)
WRONG = st.one_of(
    st.none(),
    st.booleans(),
    NUMBERS,
    ODD_TEXT,
    st.sampled_from([float("nan"), float("inf")]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


@st.composite
def encoded(draw: st.DrawFn, body: st.SearchStrategy[Any]) -> bytes:
    """A JSON body as bytes; now and then not UTF-8, cut short, or nested very deep."""
    text = json.dumps(draw(body), ensure_ascii=draw(st.booleans()))
    raw = text.encode("utf-8", "surrogatepass")  # a lone surrogate becomes invalid UTF-8
    damage = draw(st.integers(0, 12))  # 0 is where Hypothesis starts and shrinks to
    if damage == 10:
        return raw + b"\xff\xfe"
    if damage == 11:
        return raw[: len(raw) // 2]
    if damage == 12:
        return b'{"a": ' * 50_000 + b"1" + b"}" * 50_000
    return raw


def _slots(value: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) in a JSON value, to aim a mutation at."""
    out: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        for key, child in value.items():
            out.append((value, key))
            out.extend(_slots(child))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out.append((value, index))
            out.extend(_slots(child))
    return out


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[Any]) -> Any:
    """A value from ``base`` with up to three fields dropped or given a wrong type."""
    value = draw(base)
    for _ in range(draw(st.sampled_from([0, 0, 1, 2, 3]))):  # a valid body now and then
        slots = _slots(value)
        if not slots or draw(st.integers(0, 19)) == 0:
            return draw(WRONG)
        container, key = draw(st.sampled_from(slots))
        if draw(st.booleans()):
            del container[key]
        else:
            container[key] = draw(WRONG)
    return value


# --- OTLP trace exports from the real message types --------------------------------------

GENAI_KEYS = [
    "gen_ai.operation.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.system",
    "gen_ai.provider.name",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.prompt.0.content",
    "gen_ai.prompt.0.role",
    "gen_ai.completion.0.content",
    "gen_ai.tool.name",
    "gen_ai.tool.call.id",
    "gen_ai.conversation.id",
    "gen_ai.response.finish_reasons",
    "session.id",
    "input.value",
    "output.value",
    "llm.model_name",
    "llm.token_count.prompt",
    "llm.token_count.completion",
    "llm.input_messages.0.message.content",
    "llm.invocation_parameters",
    "openinference.span.kind",
    "tool.name",
]
INT64 = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([2**63 - 1, -(2**63)]))
UINT64 = st.one_of(
    st.integers(0, 2**64 - 1),
    st.sampled_from([0, 2**64 - 1]),
    st.integers(1_700_000_000 * 10**9, 1_800_000_000 * 10**9),
)
KEYS = st.one_of(st.sampled_from(GENAI_KEYS), PROTO_TEXT)
# JSON inside a string attribute (gen_ai.input.messages, input.value…), odd in its own ways.
MESSAGES = st.lists(
    st.fixed_dictionaries(
        {"role": st.one_of(st.sampled_from(["user", "assistant", "system", "tool"]), WRONG)},
        optional={"content": JSON_VALUES, "parts": JSON_VALUES},
    ),
    max_size=3,
)
SCALARS = st.one_of(
    st.builds(lambda v: AnyValue(string_value=v), PROTO_TEXT),
    st.builds(lambda v: AnyValue(string_value=json.dumps(v)), st.one_of(MESSAGES, JSON_VALUES)),
    st.builds(lambda v: AnyValue(bool_value=v), st.booleans()),
    st.builds(lambda v: AnyValue(int_value=v), INT64),
    st.builds(lambda v: AnyValue(double_value=v), st.floats()),
    st.builds(lambda v: AnyValue(bytes_value=v), st.binary(max_size=16)),
    st.just(AnyValue()),
)


def _array(values: list[AnyValue]) -> AnyValue:
    return AnyValue(array_value=ArrayValue(values=values))


def _kvlist(pairs: list[KeyValue]) -> AnyValue:
    return AnyValue(kvlist_value=KeyValueList(values=pairs))


ANY_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.builds(_array, st.lists(inner, max_size=3)),
        st.builds(_kvlist, st.lists(st.builds(KeyValue, key=KEYS, value=inner), max_size=3)),
    ),
    max_leaves=6,
)
ATTRIBUTES = st.lists(st.builds(KeyValue, key=KEYS, value=ANY_VALUES), max_size=6)
TRACE_IDS = st.one_of(st.sampled_from([b"\x01" * 16, b"\x02" * 16, b"", b"\x00" * 16]), st.binary())
SPAN_IDS = st.one_of(st.sampled_from([b"\x0a" * 8, b"\x0b" * 8, b"", b"\x00" * 8]), st.binary())


def message(cls: type, **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``cls`` built from any subset of ``fields``: every field may be missing."""
    return st.builds(lambda kw: cls(**kw), st.fixed_dictionaries({}, optional=fields))


SPANS = message(
    Span,
    trace_id=TRACE_IDS,
    span_id=SPAN_IDS,
    parent_span_id=SPAN_IDS,
    name=PROTO_TEXT,
    kind=st.integers(0, 5),
    start_time_unix_nano=UINT64,
    end_time_unix_nano=UINT64,
    attributes=ATTRIBUTES,
    events=st.lists(
        message(Span.Event, time_unix_nano=UINT64, name=PROTO_TEXT, attributes=ATTRIBUTES),
        max_size=2,
    ),
    links=st.lists(
        message(Span.Link, trace_id=TRACE_IDS, span_id=SPAN_IDS, attributes=ATTRIBUTES),
        max_size=1,
    ),
    status=message(Status, code=st.integers(0, 2), message=PROTO_TEXT),
)
TRACE_REQUESTS = message(
    ExportTraceServiceRequest,
    resource_spans=st.lists(
        message(
            ResourceSpans,
            resource=message(Resource, attributes=ATTRIBUTES),
            scope_spans=st.lists(
                message(
                    ScopeSpans,
                    scope=message(InstrumentationScope, name=PROTO_TEXT, version=PROTO_TEXT),
                    spans=st.lists(SPANS, max_size=4),
                ),
                max_size=2,
            ),
        ),
        max_size=2,
    ),
)


def otlp_json(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """The OTLP/JSON form: the protobuf JSON mapping, with ids in hex as OTLP asks."""
    body = MessageToDict(request)

    def hex_ids(value: Any) -> None:
        if isinstance(value, dict):
            for key, child in value.items():
                if key in ("traceId", "spanId", "parentSpanId") and isinstance(child, str):
                    value[key] = base64.b64decode(child).hex()
                else:
                    hex_ids(child)
        elif isinstance(value, list):
            for child in value:
                hex_ids(child)

    hex_ids(body)
    return body
