"""Tool schemas reshaped into ones llama.cpp's grammar engine accepts.

llama-cpp-python turns a JSON schema into a GBNF grammar by spelling out
length and item bounds: ``"maxLength": 2000`` becomes 2000 nested optional
groups, which llama.cpp refuses ("number of rules ... exceeds sane
defaults") and then crashes on. A local model writes short arguments anyway
(they are cut at a few hundred tokens), so large bounds are capped: the
capped schema is narrower than the original, so whatever the model writes
under it still satisfies the tool's own schema. A lower bound above the cap
cannot be honoured that way; such a schema is refused with the reason.

Pure functions: no llama.cpp here (the web process imports this module).
"""

from __future__ import annotations

import copy
from typing import Any

# Nested groups a grammar may spell out for one bound; SmolLM2 and llama.cpp
# handle 200 (elevenlabs_speak's maxLength) comfortably.
MAX_STRING_REPEAT = 200
MAX_ARRAY_REPEAT = 16
_BOUNDS = (
    ("minLength", "maxLength", MAX_STRING_REPEAT),
    ("minItems", "maxItems", MAX_ARRAY_REPEAT),
)


class SchemaRefused(ValueError):
    """A schema the local model's grammar cannot express; the message says why."""


def grammar_safe_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` with every large length or item bound capped.

    Raises :class:`SchemaRefused` when a lower bound is itself too large.
    """
    out = copy.deepcopy(schema)
    _cap(out, "")
    return out


def _cap(node: Any, where: str) -> None:
    if isinstance(node, list):
        for i, item in enumerate(node):
            _cap(item, f"{where}/{i}")
        return
    if not isinstance(node, dict):
        return
    for low_key, high_key, limit in _BOUNDS:
        low, high = node.get(low_key), node.get(high_key)
        if isinstance(low, int) and low > limit:
            raise SchemaRefused(
                f"{low_key} {low} at {where or '/'} is more than the local model's "
                f"grammar can spell out (at most {limit})"
            )
        if isinstance(high, int) and high > limit:
            node[high_key] = limit
    for key, value in node.items():
        if isinstance(value, dict | list):
            _cap(value, f"{where}/{key}")
