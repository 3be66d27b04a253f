"""``elevenlabs_speak``: turn text into speech with ElevenLabs and save the audio.

Reports the characters spoken as a cost line, since ElevenLabs bills per
character rather than per token.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from agents.extras import require
from agents.providers.base import ToolSpec
from agents.tools import ToolOutput, time_limit

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

    from elevenlabs.client import ElevenLabs

    model_id = settings.get("model_id") or "eleven_multilingual_v2"
    # The tool's time limit bounds each request, so a stalled call ends its thread.
    client = ElevenLabs(
        api_key=api_key, base_url=settings.get("base_url") or None, timeout=time_limit(settings)
    )
    audio = client.text_to_speech.convert(
        voice_id=settings.get("voice_id") or "JBFqnCBsd6RMkjVDRZzb",
        text=text,
        model_id=model_id,
        output_format="mp3_44100_128",
    )
    out_dir = Path(settings.get("data_dir", ".")) / "audio"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{uuid.uuid4().hex}.mp3"
    with path.open("wb") as f:
        for chunk in audio:
            f.write(chunk)
    line = {"vendor": "elevenlabs", "kind": "tts", "model": model_id, "characters": len(text)}
    return ToolOutput(f"spoke {len(text)} characters; audio saved to {path.name}", (line,))
