"""``hf_list_models``: search the Hugging Face Hub for models.

Calls the Hub's model search through ``huggingface_hub``'s own HTTP session
and headers rather than ``HfApi.list_models``, which takes no timeout (and
``huggingface_hub`` sets none): the tool's time limit bounds the request.

Offline, it fails at once with a message saying so rather than waiting out
that limit: with ``HF_HUB_OFFLINE`` set it asks nothing, and a host that
cannot be resolved or refuses the connection ends the call (see
:mod:`agents.tools._network`).
"""

from __future__ import annotations

from typing import Any

from agents.extras import require
from agents.providers.base import ToolSpec
from agents.tools import ToolOutput, time_limit
from agents.tools._network import Unreachable, http_timeout, unreachable

SPEC = ToolSpec(
    name="hf_list_models",
    description="Search the Hugging Face Hub and list matching model ids.",
    parameters={
        "type": "object",
        "properties": {
            "search": {"type": "string", "maxLength": 80},
            "limit": {"type": "integer", "minimum": 1, "maximum": 20},
        },
        "required": ["search"],
    },
)


def run(arguments: dict[str, Any], settings: dict[str, Any]) -> ToolOutput:
    require("huggingface_hub", "hf")
    from huggingface_hub import constants
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    search = str(arguments.get("search", "")).strip()
    if not search:
        raise ValueError("search must be a non-empty string")
    limit = max(1, min(int(arguments.get("limit") or 5), 20))
    if constants.is_offline_mode():
        raise Unreachable("the Hugging Face Hub is not asked: HF_HUB_OFFLINE is set (offline mode)")
    endpoint = (settings.get("endpoint") or constants.ENDPOINT).rstrip("/")
    url = f"{endpoint}/api/models"
    try:
        response = get_session().get(
            url,
            params={"search": search, "limit": limit},
            headers=build_hf_headers(token=settings.get("token") or None),
            timeout=http_timeout(time_limit(settings)),
        )
    except Exception as exc:
        offline = unreachable(exc, "the Hugging Face Hub", url)
        if offline is None:
            raise
        raise offline from exc
    hf_raise_for_status(response)
    models = [str(m["id"]) for m in response.json()[:limit] if isinstance(m, dict) and m.get("id")]
    if not models:
        return ToolOutput(f"no models match {search!r}")
    return ToolOutput("\n".join(models))
