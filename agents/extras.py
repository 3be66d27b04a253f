"""Optional extras: import what an extra provides, or say which extra to install.

The base install serves the studio on the local model and Mistral; W&B,
Hugging Face and ElevenLabs come with the extras ``wandb``, ``hf`` and
``elevenlabs`` (or ``all``). A tool or an export that needs a missing one
fails with :class:`MissingExtra`, whose message names the install command:
tools hand it to the model and the run's tool call, exports show it on the
export's row (page and API).
"""

from __future__ import annotations

import importlib
from types import ModuleType

DISTRIBUTION = "agentop-studio"

# What each extra brings, as a person would name it.
FEATURES = {
    "wandb": "W&B support",
    "hf": "Hugging Face support",
    "elevenlabs": "ElevenLabs speech",
    "otel-grpc": "OTLP/gRPC ingest",
}


class MissingExtra(RuntimeError):
    """A module of an optional extra is not installed."""

    def __init__(self, module: str, extra: str) -> None:
        self.module = module
        self.extra = extra
        feature = FEATURES.get(extra, f"this feature ({module})")
        super().__init__(
            f"{feature} needs the '{extra}' extra ({module} is not installed):"
            f" pip install '{DISTRIBUTION}[{extra}]'"
        )


def require(module: str, extra: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtra` naming ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        # Also a half-installed extra (a dependency of the module missing):
        # installing the extra again is the fix either way.
        raise MissingExtra(module, extra) from exc
