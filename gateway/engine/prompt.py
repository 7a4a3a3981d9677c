"""The LLM's prompt and what comes back: Qwen2.5's chat format, with function calling.

The prompt is rendered here rather than by llama-cpp-python's chat handler so that every turn's
prompt is an exact textual extension of the previous one (system prompt, then the conversation):
llama.cpp then reuses its cache for everything but the new turn. The format is Qwen2.5's chat
template (ChatML; tools as ``<tools>`` JSON in the system prompt, calls as ``<tool_call>`` JSON,
results as ``<tool_response>`` in a user turn), reproduced from the model's own template.

:class:`ReplyParser` splits the streamed reply into text to speak and function calls, robust
to what a small model writes: a call without its closing tag, a bare ``{"name": …}`` object,
arguments as a JSON string, single quotes.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"

_TOOLS_INTRO = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>")
_TOOLS_OUTRO = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}\n</tool_call>")


def qwen_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """A Realtime session's function tool (``{"type": "function", "name", "description",
    "parameters"}``) in the chat template's shape."""
    function = {key: tool[key] for key in ("name", "description", "parameters") if tool.get(key) is not None}
    return {"type": "function", "function": function}


def function_tools(tools: Any) -> tuple[dict[str, Any], ...]:
    """The function tools of a session's ``tools`` list (other kinds, e.g. MCP, are not offered)."""
    if not isinstance(tools, list):
        return ()
    return tuple(t for t in tools if isinstance(t, dict) and t.get("type", "function") == "function"
                 and isinstance(t.get("name"), str) and t["name"])


def _call_text(call: dict[str, Any]) -> str:
    return (f'\n{CALL_OPEN}\n{{"name": "{call["name"]}", "arguments": '
            f'{json.dumps(call.get("arguments", {}), ensure_ascii=False)}}}\n{CALL_CLOSE}')


def render(messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] = (), *,
           reply_prefix: str = "") -> str:
    """The prompt for ``messages`` (the first one the system message), ending where the
    assistant's reply begins (with ``reply_prefix`` already written, e.g. an opened call)."""
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
    rest = messages[1:] if messages and messages[0]["role"] == "system" else messages
    if tools:
        listed = "".join("\n" + json.dumps(qwen_tool(t), ensure_ascii=False) for t in tools)
        out = [f"{IM_START}system\n{system}{_TOOLS_INTRO}{listed}{_TOOLS_OUTRO}{IM_END}\n"]
    else:
        out = [f"{IM_START}system\n{system}{IM_END}\n"]
    for index, message in enumerate(rest):
        role = message["role"]
        if role == "tool":
            if index == 0 or rest[index - 1]["role"] != "tool":
                out.append(f"{IM_START}user")
            out.append(f"\n<tool_response>\n{message['content']}\n</tool_response>")
            if index == len(rest) - 1 or rest[index + 1]["role"] != "tool":
                out.append(f"{IM_END}\n")
        elif role == "assistant" and message.get("tool_calls"):
            content = f"\n{message['content']}" if message.get("content") else ""
            out.append(f"{IM_START}assistant{content}{''.join(_call_text(c) for c in message['tool_calls'])}{IM_END}\n")
        else:
            out.append(f"{IM_START}{role}\n{message['content']}{IM_END}\n")
    out.append(f"{IM_START}assistant\n{reply_prefix}")
    return "".join(out)


def reply_prefix(tools: Sequence[dict[str, Any]], tool_choice: str) -> str:
    """What the prompt writes for the model to make ``tool_choice`` hold: "required" opens a
    call, a function's name opens a call to it; "auto"/"none" leave the reply free."""
    if not tools or tool_choice in ("auto", "none"):
        return ""
    if tool_choice == "required":
        return f"{CALL_OPEN}\n"
    return f'{CALL_OPEN}\n{{"name": "{tool_choice}", "arguments": '


@dataclass(frozen=True)
class Spoken:
    """Reply text meant for the listener."""

    text: str


@dataclass(frozen=True)
class FunctionCall:
    name: str
    arguments: str  # a JSON object, as the Realtime protocol carries it


ReplyPart = Spoken | FunctionCall


def _pending_prefix(text: str, marker: str) -> int:
    """Length of the longest end of ``text`` that could be the start of ``marker``."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0


def parse_call(body: str, names: Sequence[str]) -> FunctionCall | None:
    """A call from the JSON a model wrote between the tags, or None if it names no known function."""
    body = body.strip()
    start, end = body.find("{"), body.rfind("}")
    if start < 0:
        return None
    candidate = body[start:end + 1] if end > start else body[start:] + "}"
    data: Any = None
    for attempt in (candidate, candidate + "}"):
        for loader in (json.loads, ast.literal_eval):
            try:
                data = loader(attempt)
                break
            except (ValueError, SyntaxError, RecursionError):
                continue
        if isinstance(data, dict):
            break
    if not isinstance(data, dict):
        match = re.search(r"[\"']name[\"']\s*:\s*[\"']([^\"']+)", candidate)
        data = {"name": match.group(1), "arguments": {}} if match else None
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("function"), dict):  # {"function": {"name": …, "arguments": …}}
        data = data["function"]
    name = data.get("name")
    if not isinstance(name, str) or name not in names:
        return None
    arguments = data.get("arguments", data.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            arguments = {"input": arguments}
    if not isinstance(arguments, dict):
        arguments = {}
    return FunctionCall(name, json.dumps(arguments, ensure_ascii=False))


class ReplyParser:
    """Streamed reply text in; :class:`Spoken` text and :class:`FunctionCall`\\ s out, in order."""

    def __init__(self, function_names: Sequence[str], opened: str = "") -> None:
        """``opened``: what the prompt already wrote of the reply (:func:`reply_prefix`)."""
        self._names = tuple(function_names)
        self._text = ""  # undecided text outside a call
        self._call: str | None = opened.removeprefix(CALL_OPEN) if opened.startswith(CALL_OPEN) else None
        self._started = bool(opened)  # anything beyond whitespace seen (a bare JSON call must come first)

    def push(self, text: str) -> list[ReplyPart]:
        parts: list[ReplyPart] = []
        if self._call is not None:
            self._call += text
        else:
            self._text += text
        while True:
            if self._call is not None:
                close = self._call.find(CALL_CLOSE)
                if close < 0:
                    return parts
                body, rest = self._call[:close], self._call[close + len(CALL_CLOSE):]
                self._call = None
                parts += self._finish_call(body)
                self._text = rest
                continue
            if not self._names:
                parts += self._speak(self._text)
                self._text = ""
                return parts
            if not self._started and self._text.lstrip().startswith(("{", "[")):
                return parts  # perhaps a call without its tags: decided at the end
            opening = self._text.find(CALL_OPEN)
            if opening >= 0:
                parts += self._speak(self._text[:opening])
                self._call, self._text = self._text[opening + len(CALL_OPEN):], ""
                continue
            keep = _pending_prefix(self._text, CALL_OPEN)
            parts += self._speak(self._text[:len(self._text) - keep])
            self._text = self._text[len(self._text) - keep:]
            return parts

    def _speak(self, text: str) -> list[ReplyPart]:
        if not text:
            return []
        if text.strip():
            self._started = True
        return [Spoken(text)]

    def _finish_call(self, body: str) -> list[ReplyPart]:
        call = parse_call(body, self._names)
        self._started = True
        return [call] if call is not None else []

    def finish(self) -> list[ReplyPart]:
        """The end of the reply: an unclosed call is parsed as far as it got."""
        if self._call is not None:
            body, self._call = self._call, None
            return self._finish_call(body)
        text, self._text = self._text, ""
        if not self._started and text.lstrip().startswith(("{", "[")):
            call = parse_call(text, self._names)
            if call is not None:
                return [call]
        return self._speak(text)
