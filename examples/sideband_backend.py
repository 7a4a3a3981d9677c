"""A backend that runs a browser call's tools and instructions through the gateway's sideband.

    GATEWAY_URL=http://localhost:5000 GATEWAY_API_KEY=<one of GATEWAY_API_KEYS> \\
        python examples/sideband_backend.py rtc_…

The browser starts the call as usual (``POST /v1/realtime/calls``) and hands the call id (the
last part of ``Location``) to this backend, which attaches with the official ``openai``
package, exactly as to OpenAI: it gives the assistant instructions and a tool the browser never
sees, answers the model's calls to the tool, and prints the conversation.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable

from openai import AsyncOpenAI
from openai.types.realtime import RealtimeToolsConfigParam

INSTRUCTIONS = ("Você é o atendente da loja. Quando perguntarem do tempo, use get_weather e responda "
                "em uma frase.")
TOOLS: RealtimeToolsConfigParam = [{"type": "function", "name": "get_weather", "description": "The weather now in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


def get_weather(city: str) -> str:
    return f"Faz 31 graus e sol em {city}."  # a real backend asks a weather service


def run_tool(name: str, arguments: str) -> str:
    if name != "get_weather":
        return json.dumps({"error": f"no tool {name}"})
    return get_weather(**json.loads(arguments or "{}"))


async def control(client: AsyncOpenAI, call_id: str, log: Callable[[str], None] = print) -> None:
    """Attach to the call and serve it until it ends (the gateway then closes the connection)."""
    async with client.realtime.connect(call_id=call_id) as connection:
        await connection.session.update(session={"type": "realtime", "instructions": INSTRUCTIONS, "tools": TOOLS})
        async for event in connection:
            if event.type == "response.function_call_arguments.done":
                output = run_tool(event.name, event.arguments)
                log(f"tool {event.name}({event.arguments}) → {output}")
                await connection.conversation.item.create(
                    item={"type": "function_call_output", "call_id": event.call_id, "output": output})
                await connection.response.create()
            elif event.type == "conversation.item.input_audio_transcription.completed":
                log(f"user: {event.transcript}")
            elif event.type == "response.output_audio_transcript.done":
                log(f"assistant: {event.transcript}")
            elif event.type == "error":
                log(f"error: {event.error.code}: {event.error.message}")


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: sideband_backend.py rtc_<call id>")
    client = AsyncOpenAI(api_key=os.environ["GATEWAY_API_KEY"],
                         base_url=os.environ.get("GATEWAY_URL", "http://localhost:5000").rstrip("/") + "/v1")
    asyncio.run(control(client, sys.argv[1]))


if __name__ == "__main__":
    main()
