"""The LLM's prompt (Qwen2.5's chat format with tools) and the parsing of what it writes back."""

from __future__ import annotations

import json

import jinja2
import pytest

from gateway.engine.prompt import FunctionCall, ReplyParser, Spoken, qwen_tool, render, reply_prefix

# Qwen2.5-Instruct's chat template, as its GGUF carries it (tokenizer.chat_template).
QWEN_TEMPLATE = "\n".join([
    '{%- if tools %}',
    "    {{- '<|im_start|>system\\n' }}",
    "    {%- if messages[0]['role'] == 'system' %}",
    "        {{- messages[0]['content'] }}",
    '    {%- else %}',
    "        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}",
    '    {%- endif %}',
    '    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are'
    ' provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}',
    '    {%- for tool in tools %}',
    '        {{- "\\n" }}',
    '        {{- tool | tojson }}',
    '    {%- endfor %}',
    '    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments'
    ' within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <'
    'args-json-object>}\\n</tool_call><|im_end|>\\n" }}',
    '{%- else %}',
    "    {%- if messages[0]['role'] == 'system' %}",
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}",
    '    {%- else %}',
    "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}",
    '    {%- endif %}',
    '{%- endif %}',
    '{%- for message in messages %}',
    '    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.rol'
    'e == "assistant" and not message.tool_calls) %}',
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}",
    '    {%- elif message.role == "assistant" %}',
    "        {{- '<|im_start|>' + message.role }}",
    '        {%- if message.content %}',
    "            {{- '\\n' + message.content }}",
    '        {%- endif %}',
    '        {%- for tool_call in message.tool_calls %}',
    '            {%- if tool_call.function is defined %}',
    '                {%- set tool_call = tool_call.function %}',
    '            {%- endif %}',
    '            {{- \'\\n<tool_call>\\n{"name": "\' }}',
    '            {{- tool_call.name }}',
    '            {{- \'", "arguments": \' }}',
    '            {{- tool_call.arguments | tojson }}',
    "            {{- '}\\n</tool_call>' }}",
    '        {%- endfor %}',
    "        {{- '<|im_end|>\\n' }}",
    '    {%- elif message.role == "tool" %}',
    '        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}',
    "            {{- '<|im_start|>user' }}",
    '        {%- endif %}',
    "        {{- '\\n<tool_response>\\n' }}",
    '        {{- message.content }}',
    "        {{- '\\n</tool_response>' }}",
    '        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}',
    "            {{- '<|im_end|>\\n' }}",
    '        {%- endif %}',
    '    {%- endif %}',
    '{%- endfor %}',
    '{%- if add_generation_prompt %}',
    "    {{- '<|im_start|>assistant\\n' }}",
    '{%- endif %}',
    '',
])

WEATHER = {"type": "function", "name": "get_weather", "description": "Tempo agora numa cidade.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
CLOCK = {"type": "function", "name": "get_time", "description": "Hora certa.", "parameters": {"type": "object"}}


def reference(messages: list[dict[str, object]], tools: list[dict[str, object]]) -> str:
    environment = jinja2.Environment()
    environment.filters["tojson"] = lambda value: json.dumps(value, ensure_ascii=False)  # as transformers does
    return environment.from_string(QWEN_TEMPLATE).render(messages=messages, tools=[qwen_tool(t) for t in tools],
                                                          add_generation_prompt=True)


CONVERSATIONS = [
    [{"role": "system", "content": "Seja breve."}, {"role": "user", "content": "Olá"}],
    [{"role": "system", "content": "Seja breve."}, {"role": "user", "content": "Olá"},
     {"role": "assistant", "content": "Oi! Tudo bem?"}, {"role": "user", "content": "Que horas são?"}],
    [{"role": "system", "content": "Seja breve."}, {"role": "user", "content": "Tempo em Recife e a hora?"},
     {"role": "assistant", "content": "Vou ver.", "tool_calls": [{"name": "get_weather", "arguments": {"city": "Recife"}},
                                                                  {"name": "get_time", "arguments": {}}]},
     {"role": "tool", "content": '{"temp_c": 31}'}, {"role": "tool", "content": '"15:02"'}],
]


@pytest.mark.parametrize("messages", CONVERSATIONS)
@pytest.mark.parametrize("tools", [[], [WEATHER, CLOCK]])
def test_render_matches_the_models_own_template(messages: list[dict[str, object]], tools: list[dict[str, object]]) -> None:
    assert render(messages, tools) == reference(messages, tools)


def test_each_turns_prompt_extends_the_last_one() -> None:
    """What lets llama.cpp reuse its cache: turn n+1's prompt starts with turn n's prompt and reply."""
    first = CONVERSATIONS[1][:2]
    reply = "Oi! Tudo bem?"
    assert render([*first, {"role": "assistant", "content": reply}, {"role": "user", "content": "x"}]).startswith(
        render(first) + reply)


def test_tool_choice_opens_the_reply() -> None:
    assert reply_prefix([WEATHER], "auto") == reply_prefix([WEATHER], "none") == reply_prefix([], "required") == ""
    assert reply_prefix([WEATHER], "required") == "<tool_call>\n"
    assert reply_prefix([WEATHER], "get_weather") == '<tool_call>\n{"name": "get_weather", "arguments": '


def feed(parser: ReplyParser, chunks: list[str]) -> list[Spoken | FunctionCall]:
    parts: list[Spoken | FunctionCall] = []
    for chunk in chunks:
        parts += parser.push(chunk)
    return parts + parser.finish()


def spoken(parts: list[Spoken | FunctionCall]) -> str:
    return "".join(p.text for p in parts if isinstance(p, Spoken))


def calls(parts: list[Spoken | FunctionCall]) -> list[tuple[str, dict[str, object]]]:
    return [(p.name, json.loads(p.arguments)) for p in parts if isinstance(p, FunctionCall)]


def test_text_then_a_call_split_across_tokens() -> None:
    parts = feed(ReplyParser(["get_weather"]), ["Vou ", "ver.", "\n<tool", "_call>\n{\"name\": \"get_", "weather\", ",
                                                "\"arguments\": {\"city\": \"Re", "cife\"}}\n</tool_call>"])
    assert spoken(parts) == "Vou ver.\n"
    assert calls(parts) == [("get_weather", {"city": "Recife"})]
    assert isinstance(parts[-1], FunctionCall)


@pytest.mark.parametrize("reply", [
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Recife"}}',  # never closed (max tokens)
    '{"name": "get_weather", "arguments": {"city": "Recife"}}',  # no tags at all
    "<tool_call>\n{'name': 'get_weather', 'arguments': {'city': 'Recife'}}\n</tool_call>",  # Python quotes
    '<tool_call>\n{"name": "get_weather", "arguments": "{\\"city\\": \\"Recife\\"}"}\n</tool_call>',  # string args
    '<tool_call>\n{"function": {"name": "get_weather", "arguments": {"city": "Recife"}}}\n</tool_call>',
])
def test_calls_small_models_write_are_understood(reply: str) -> None:
    parts = feed(ReplyParser(["get_weather"]), [reply[i:i + 7] for i in range(0, len(reply), 7)])
    assert calls(parts) == [("get_weather", {"city": "Recife"})] and spoken(parts).strip() == ""


def test_unknown_functions_and_plain_text_are_not_calls() -> None:
    parts = feed(ReplyParser(["get_weather"]), ['<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>Pronto.'])
    assert calls(parts) == [] and spoken(parts) == "Pronto."
    assert spoken(feed(ReplyParser([]), ["A <b> é ", "{x}"])) == "A <b> é {x}"  # no tools: all is text
    parts = feed(ReplyParser(["get_weather"]), ["Em Recife ", "faz 31 graus."])
    assert spoken(parts) == "Em Recife faz 31 graus." and calls(parts) == []


def test_a_call_the_prompt_opened() -> None:
    opened = reply_prefix([WEATHER], "get_weather")
    parts = feed(ReplyParser(["get_weather"], opened), ['{"city": "Recife"}}\n</tool_call>'])
    assert calls(parts) == [("get_weather", {"city": "Recife"})]
