"""The model side of the local provider: llama.cpp, loaded in the worker process only.

:class:`Engine` holds one loaded GGUF and answers a conversation. Tool calls
are produced with JSON-schema-constrained generation, so they are always
well-formed: first the model picks from an enum ("none" or one of the tool
names), then, for a tool, it writes the arguments under that tool's own JSON
schema. The arguments and a plain answer are both streamed token by token.

Importing this module imports ``llama_cpp``: only
:mod:`agents.providers.local_worker` does, never the web process.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import llama_cpp
import llama_cpp.llama_cpp as lib
from llama_cpp import Llama, LlamaGrammar, StoppingCriteriaList
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from agents.providers.base import ProviderError
from agents.providers.local_model import LocalModel

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
DECISION_MAX_TOKENS = 24
ARGUMENTS_MAX_TOKENS = 256


@contextlib.contextmanager
def _model_params_patch(weight_repack: bool) -> Iterator[None]:
    """``Llama()`` offers no switch for ``use_extra_bufts``; set it on the default params."""
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


def tool_instructions(tools: list[dict[str, Any]]) -> str:
    lines = ["Tools:"]
    for tool in tools:
        lines.append(f"- {tool['name']}: {tool['description']}")
    lines.append("If a tool helps with the user's request, name it; otherwise say none.")
    return "\n".join(lines)


def chat_messages(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]]
) -> list[dict[str, str]]:
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
        extra = tool_instructions(tools)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{extra}"}
        else:
            out.insert(0, {"role": "system", "content": extra})
    return out


class Cancelled(Exception):
    """The studio asked to stop this generation."""


class Engine:
    """One loaded model; one generation at a time (a llama.cpp context is not thread-safe)."""

    def __init__(self, spec: LocalModel) -> None:
        path = spec.path()
        if not path.exists():
            raise ProviderError(f"GGUF file not found: {path}")
        with _model_params_patch(spec.weight_repack):
            self.llm: Any = Llama(
                model_path=str(path), n_ctx=spec.n_ctx, n_threads=spec.n_threads, verbose=False
            )
        llm = self.llm
        eos = llm.detokenize([llm.token_eos()], special=True).decode("utf-8", "ignore")
        bos = llm.detokenize([llm.token_bos()], special=True).decode("utf-8", "ignore")
        template = llm.metadata.get("tokenizer.chat_template") or CHATML
        self.formatter: Any = Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos)
        self.model_name = spec.name

    def check_schema(self, schema: dict[str, Any]) -> str | None:
        """None if llama.cpp compiles the schema's grammar, else the reason it does not."""
        try:
            gbnf = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)._grammar
        except Exception as exc:  # noqa: BLE001 - the converter's refusal is the answer
            return f"the JSON schema cannot be turned into a grammar: {exc}"
        # The same call the sampler makes; llama.cpp answers NULL for a grammar it
        # refuses, and llama-cpp-python would hand that NULL on to native code.
        vocab = self.llm._model.vocab
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
        if not sampler:
            return "llama.cpp refused the grammar (too many rules or an unsupported construct)"
        llama_cpp.llama_sampler_free(sampler)
        return None

    def prompt(self, chat: list[dict[str, str]], suffix: str = "") -> tuple[list[int], Any]:
        formatted = self.formatter(messages=chat)
        text = formatted.prompt + suffix
        tokens = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        return tokens, formatted.stop

    def constrained(
        self,
        tokens: list[int],
        schema: dict[str, Any],
        temperature: float,
        max_tokens: int,
        stopped: threading.Event | None = None,
    ) -> tuple[str, int]:
        """Text the model writes under ``schema`` and how many tokens that took."""
        grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        # Not streamed (usage counts exactly); a stop request is seen at every token.
        halt = StoppingCriteriaList([lambda _ids, _logits: bool(stopped and stopped.is_set())])
        out = self.llm.create_completion(
            tokens,
            grammar=grammar,
            max_tokens=max_tokens,
            temperature=temperature,
            stopping_criteria=halt,
        )
        if stopped is not None and stopped.is_set():
            raise Cancelled()
        return out["choices"][0]["text"], out["usage"]["completion_tokens"]

    def constrained_stream(
        self,
        tokens: list[int],
        schema: dict[str, Any],
        temperature: float,
        max_tokens: int,
        stopped: threading.Event,
        on_text: Callable[[str], None],
    ) -> tuple[str, int]:
        """:meth:`constrained`, streamed: ``on_text`` gets each piece as the model writes it.

        The token count is one per streamed piece (llama.cpp reports no usage
        when streaming), as for a streamed answer.
        """
        grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        parts: list[str] = []
        for chunk in self.llm.create_completion(
            tokens, grammar=grammar, max_tokens=max_tokens, temperature=temperature, stream=True
        ):
            piece = chunk["choices"][0].get("text") or ""
            if piece:
                parts.append(piece)
                on_text(piece)
            if stopped.is_set():
                raise Cancelled()
        return "".join(parts), len(parts)

    def generate(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        temperature: float,
        max_tokens: int,
        on_text: Callable[[str], None],
        stopped: threading.Event,
        on_tool_text: Callable[[str, str], None] | None = None,
    ) -> dict[str, Any]:
        """Answer the conversation: a completion as a JSON-ready dict.

        ``on_text`` gets the answer's pieces; ``on_tool_text(name, piece)`` the
        pieces of a tool call's arguments (first an empty piece, once the tool
        is chosen).
        """
        chat = chat_messages(messages, tools)
        # The answer prompt leaves out the tool instructions, which only confuse it.
        tokens, stop = self.prompt(chat_messages(messages, []))
        input_tokens = output_tokens = 0
        # A small model decides once per user turn: after a tool result it answers.
        if tools and messages[-1]["role"] != "tool":
            names = [t["name"] for t in tools]
            decision_tokens, _ = self.prompt(chat, "Tool: ")
            text, used = self.constrained(
                decision_tokens,
                {"type": "string", "enum": ["none", *names]},
                temperature,
                DECISION_MAX_TOKENS,
                stopped,
            )
            input_tokens += len(decision_tokens)
            output_tokens += used
            try:
                action = json.loads(text)
            except json.JSONDecodeError:
                action = "none"
            if action in names:
                tool = next(t for t in tools if t["name"] == action)
                name = tool["name"]

                def on_args(piece: str) -> None:
                    if on_tool_text is not None:
                        on_tool_text(name, piece)

                on_args("")  # the tool is chosen: its call is being written
                args_tokens, _ = self.prompt(chat, f"Calling {name} with arguments (JSON): ")
                raw, used = self.constrained_stream(
                    args_tokens,
                    tool["parameters"],
                    temperature,
                    ARGUMENTS_MAX_TOKENS,
                    stopped,
                    on_args,
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
                call = {
                    "id": f"call_{uuid.uuid4().hex[:12]}",
                    "name": tool["name"],
                    "arguments": arguments,
                }
                return {
                    "text": "",
                    "input_tokens": input_tokens,
                    "output_tokens": output_tokens,
                    "finish_reason": "tool_calls",
                    "tool_calls": [call],
                }
        parts: list[str] = []
        finish_reason = None
        for chunk in self.llm.create_completion(
            tokens, stream=True, max_tokens=max_tokens, temperature=temperature, stop=stop
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
        return {
            "text": "".join(parts).strip(),
            "input_tokens": input_tokens + len(tokens),
            "output_tokens": output_tokens,
            "finish_reason": finish_reason,
            "tool_calls": [],
        }
