"""``elevenlabs_speak``: turn text into speech with ElevenLabs and save the audio.

Reports the characters spoken as a cost line, since ElevenLabs bills per
character rather than per token. Connecting has a short timeout of its own,
and an unreachable service fails the call at once, saying why
(:mod:`agents.tools._network`).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from agents.extras import require
from agents.providers.base import ToolSpec
from agents.tools import ToolOutput, time_limit
from agents.tools._network import short_connect, unreachable

DEFAULT_BASE_URL = "https://api.elevenlabs.io"

SPEC = ToolSpec(
    name="elevenlabs_speak",
    description="Speak a short text aloud with ElevenLabs text-to-speech; returns the audio file.",
    parameters={
        "type": "object",
        "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 200}},
        "required": ["text"],
    },
)


def run(arguments: dict[str, Any], settings: dict[str, Any]) -> ToolOutput:
    text = str(arguments.get("text", "")).strip()
    if not text:
        raise ValueError("text must be a non-empty string")
    require("elevenlabs", "elevenlabs")
    api_key = settings.get("api_key")
    if not api_key:
        raise RuntimeError("ELEVENLABS_API_KEY is not set")

    import httpx
    from elevenlabs.client import ElevenLabs

    model_id = settings.get("model_id") or "eleven_multilingual_v2"
    base_url = settings.get("base_url") or DEFAULT_BASE_URL
    limit = time_limit(settings)
    out_dir = Path(settings.get("data_dir", ".")) / "audio"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{uuid.uuid4().hex}.mp3"
    # The tool's time limit bounds each request, so a stalled call ends its
    # thread; connecting gets a short limit of its own.
    hooks = {"request": [short_connect]}  # the SDK sends ``limit`` for every phase
    with httpx.Client(timeout=limit, follow_redirects=True, event_hooks=hooks) as http:
        client = ElevenLabs(api_key=api_key, base_url=base_url, timeout=limit, httpx_client=http)
        try:
            audio = client.text_to_speech.convert(
                voice_id=settings.get("voice_id") or "JBFqnCBsd6RMkjVDRZzb",
                text=text,
                model_id=model_id,
                output_format="mp3_44100_128",
            )
            with path.open("wb") as f:
                for chunk in audio:
                    f.write(chunk)
        except Exception as exc:
            path.unlink(missing_ok=True)
            offline = unreachable(exc, "ElevenLabs", base_url)
            if offline is None:
                raise
            raise offline from exc
    line = {"vendor": "elevenlabs", "kind": "tts", "model": model_id, "characters": len(text)}
    return ToolOutput(f"spoke {len(text)} characters; audio saved to {path.name}", (line,))
