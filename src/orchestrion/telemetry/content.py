"""Message content as the GenAI conventions record it (opt-in, always redacted).

`gen_ai.input.messages` and `gen_ai.output.messages` are JSON arrays of
`{"role", "parts": [...]}`, a part being `{"type": "text", "content"}`,
`{"type": "tool_call", "id", "name", "arguments"}` or
`{"type": "tool_call_response", "id", "response"}`. Each attribute is one JSON
string, passed through the secret redactor as a whole.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrion._json import JSON, dumps_str, loads
from orchestrion.messages import Message, ModelResponse, ToolCall, ToolResult, UserMessage
from orchestrion.redact import redact


def input_messages(messages: Sequence[Message]) -> str:
    return redact(dumps_str([_message(m) for m in messages]))


def output_messages(response: ModelResponse) -> str:
    message = _message(response)
    message["finish_reason"] = response.finish_reason or "stop"
    return redact(dumps_str([message]))


def instructions(text: str) -> str:
    return redact(dumps_str([{"type": "text", "content": text}]))


def text(value: str) -> str:
    return redact(value)


def _message(message: Message) -> dict[str, JSON]:
    if isinstance(message, UserMessage):
        return {"role": "user", "parts": [{"type": "text", "content": message.content}]}
    if isinstance(message, ToolResult):
        part: dict[str, JSON] = {
            "type": "tool_call_response",
            "id": message.call_id,
            "response": message.content,
        }
        return {"role": "tool", "parts": [part]}
    parts: list[JSON] = []
    if message.text:
        parts.append({"type": "text", "content": message.text})
    parts.extend(_call(c) for c in message.tool_calls)
    return {"role": "assistant", "parts": parts}


def _call(call: ToolCall) -> dict[str, JSON]:
    try:
        arguments: JSON = loads(call.arguments or "{}")
    except ValueError:  # as the model wrote it, invalid or not
        arguments = call.arguments
    return {"type": "tool_call", "id": call.id, "name": call.name, "arguments": arguments}
