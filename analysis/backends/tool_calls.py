"""Tool calls written as text by a language model: the prompt that requests them, and the parser.

Models trained for function calling (Qwen2.5, Hermes, SmolLM2 and others) write a call as
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``. Others write a bare JSON object
with ``name`` and ``arguments`` (Llama 3.1 writes ``parameters``). ``parse_tool_calls`` reads
all of these into ToolCall objects and returns the rest of the text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from typing import Any

from analysis.backends.roles import ToolCall

_TAGGED_CALL = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL)
_CODE_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)
_EMPTY_FENCE = re.compile(r"```(?:json)?\s*```")


def tool_instructions(tools: list[dict]) -> str:
    """Describe ``tools`` (OpenAI-style function specs) and the call format, for a system prompt.

    Used when a model's chat template has no place for tools.
    """
    specs = "\n".join(json.dumps(tool.get("function", tool), sort_keys=True) for tool in tools)
    return (
        "You can call the functions described below. To call one, reply with only\n"
        '<tool_call>{"name": "<function name>", "arguments": {<arguments as a JSON object>}}</tool_call>\n'
        f"Functions:\n{specs}"
    )


def parse_tool_calls(text: str, tool_names: Collection[str] | None = None) -> tuple[str, list[ToolCall]]:
    """Split model output into the text outside tool calls and the calls themselves.

    Calls inside ``<tool_call>`` tags are always taken, and a final tag that the model did not
    close is read to the end of the text. Only when there are no tagged calls, a bare JSON
    object (or list of objects) with ``name`` and ``arguments`` or ``parameters`` counts as a
    call, and only if its name is in ``tool_names`` (any name when ``tool_names`` is None).
    Arguments written as a JSON string are decoded. Anything that is not valid JSON or not
    shaped like a call stays in the returned text.
    """
    calls: list[ToolCall] = []
    spans: list[tuple[int, int]] = []
    for match in _TAGGED_CALL.finditer(text):
        found = _calls_from_json(_load_json(match.group(1)), require_arguments=False)
        if found:
            calls.extend(found)
            spans.append(match.span())
    if not calls:
        for start, end, value in _bare_json_values(text):
            found = _calls_from_json(value, require_arguments=True)
            if found and (tool_names is None or all(call.name in tool_names for call in found)):
                calls.extend(found)
                spans.append((start, end))
    for index, call in enumerate(calls):
        call.id = f"call_{index}"
    remaining = text
    for start, end in reversed(spans):
        remaining = remaining[:start] + remaining[end:]
    return _EMPTY_FENCE.sub("", remaining).strip(), calls


def _load_json(payload: str) -> Any:
    payload = payload.strip()
    fenced = _CODE_FENCE.match(payload)
    if fenced:
        payload = fenced.group(1)
    try:
        return json.loads(payload)
    except json.JSONDecodeError:
        return None


def _bare_json_values(text: str):
    """Yield (start, end, value) for each JSON object or array that starts at a ``{`` or ``[``."""
    decoder = json.JSONDecoder()
    index = 0
    while index < len(text):
        if text[index] in "{[":
            try:
                value, end = decoder.raw_decode(text, index)
            except json.JSONDecodeError:
                index += 1
                continue
            yield index, end, value
            index = end
        else:
            index += 1


def _calls_from_json(value: Any, require_arguments: bool) -> list[ToolCall]:
    """Read one call or a list of calls. Return [] unless every entry is a valid call."""
    entries = value if isinstance(value, list) else [value]
    calls = []
    for entry in entries:
        call = _call_from_dict(entry, require_arguments)
        if call is None:
            return []
        calls.append(call)
    return calls


def _call_from_dict(entry: Any, require_arguments: bool) -> ToolCall | None:
    if not isinstance(entry, dict):
        return None
    if isinstance(entry.get("function"), dict):  # the OpenAI shape {"type": "function", "function": {...}}
        entry = entry["function"]
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        return None
    if "arguments" in entry:
        arguments = entry["arguments"]
    elif "parameters" in entry:
        arguments = entry["parameters"]
    elif require_arguments:
        return None
    else:
        arguments = {}
    if arguments is None:
        arguments = {}
    elif isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            return None
    if not isinstance(arguments, dict):
        return None
    return ToolCall(name=name.strip(), arguments=arguments)
