"""Local fake provider servers speaking the OpenAI and Anthropic wire formats.

`FakeServer` listens on 127.0.0.1 (random port) in a background thread, records
every JSON request it receives and answers with scripted `Reply`s, in order. The
builders below write the providers' real payloads: OpenAI `chat.completion` JSON
and `chat.completion.chunk` SSE (`data: {...}` ... `data: [DONE]`), Anthropic
`message` JSON and its named SSE events, and each provider's error bodies. Shapes
follow the installed SDKs' types (openai.types.chat, anthropic.types) and the
providers' API references.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_ids = itertools.count(1)


@dataclass(frozen=True)
class Recorded:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    """Header names in lower case."""
    body: Any
    """The parsed JSON body."""


@dataclass(frozen=True)
class Reply:
    """One scripted answer: a JSON body, or a list of SSE frames sent one by one."""

    status: int = 200
    body: Any = None
    frames: Sequence[str] | None = None
    headers: dict[str, str] = field(default_factory=dict)


class FakeServer:
    """A scripted HTTP server; use as a context manager, or `start()`/`close()`."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def reply(self, *replies: Reply) -> None:
        """Queue answers for the next requests, first in first out."""
        with self._lock:
            self._replies.extend(replies)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._replies)

    def start(self) -> FakeServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # wake handlers waiting on kept-alive connections
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next(self, recorded: Recorded) -> Reply:
        with self._lock:
            self.requests.append(recorded)
            if self._replies:
                return self._replies.popleft()
        return Reply(500, {"error": {"message": "FakeServer: no scripted reply left"}})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive and chunked bodies, as real APIs

            def setup(self) -> None:
                super().setup()
                with server._lock:
                    server._connections.add(self.connection)

            def finish(self) -> None:
                with server._lock:
                    server._connections.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                recorded = Recorded(
                    method="POST",
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=json.loads(raw) if raw else None,
                )
                self._send(server._next(recorded))

            def _send(self, reply: Reply) -> None:
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.frames is None:
                    data = json.dumps(reply.body).encode()
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_header("content-type", "text/event-stream; charset=utf-8")
                self.send_header("cache-control", "no-cache")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                try:
                    for frame in reply.frames:  # one HTTP chunk per event, flushed
                        data = frame.encode()
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                except ConnectionError:  # the client stopped reading the stream early
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

        return Handler


def sse(reply_frames: Iterable[str], *, status: int = 200) -> Reply:
    return Reply(status, frames=list(reply_frames))


# -- OpenAI Chat Completions ---------------------------------------------------

OPENAI_MODEL = "gpt-4.1-mini-2025-04-14"
OPENAI_CREATED = 1_767_225_600


def openai_usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def openai_completion(
    *,
    text: str | None = None,
    tool_calls: Sequence[tuple[str, str, str]] = (),
    finish_reason: str | None = None,
    model: str = OPENAI_MODEL,
    usage: tuple[int, int] = (21, 9),
) -> Reply:
    """A `chat.completion` object; `tool_calls` as (id, name, arguments JSON text)."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text,
        "refusal": None,
        "annotations": [],
    }
    if tool_calls:
        message["tool_calls"] = [
            {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
            for cid, name, args in tool_calls
        ]
    body = {
        "id": f"chatcmpl-fake{next(_ids)}",
        "object": "chat.completion",
        "created": OPENAI_CREATED,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason or ("tool_calls" if tool_calls else "stop"),
            }
        ],
        "usage": openai_usage(*usage),
        "service_tier": "default",
        "system_fingerprint": "fp_fake",
    }
    return Reply(200, body, headers={"x-request-id": f"req_fake{next(_ids)}"})


def openai_stream(
    *,
    text: Sequence[str] = (),
    tool_calls: Sequence[tuple[str, str, Sequence[str]]] = (),
    finish_reason: str | None = None,
    model: str = OPENAI_MODEL,
    usage: tuple[int, int] | None = (21, 9),
) -> Reply:
    """`chat.completion.chunk` SSE frames as the API sends them with
    `stream_options.include_usage`: a role chunk, content pieces, tool calls split
    across chunks by `index` (id and name only in the first), a finish chunk, a
    usage chunk with no choices, then `data: [DONE]`.

    `tool_calls` as (id, name, argument pieces).
    """
    chunk_id = f"chatcmpl-fake{next(_ids)}"

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": OPENAI_CREATED,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            "usage": None,
        }

    chunks = [chunk({"role": "assistant", "content": "" if not tool_calls else None})]
    chunks += [chunk({"content": piece}) for piece in text]
    for index, (cid, name, pieces) in enumerate(tool_calls):
        first = {"index": index, "id": cid, "type": "function"}
        first["function"] = {"name": name, "arguments": ""}
        chunks.append(chunk({"tool_calls": [first]}))
        chunks += [
            chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            for piece in pieces
        ]
    chunks.append(chunk({}, finish_reason or ("tool_calls" if tool_calls else "stop")))
    if usage is not None:
        last = chunk({})
        last["choices"] = []
        last["usage"] = openai_usage(*usage)
        chunks.append(last)
    frames = [f"data: {json.dumps(c)}\n\n" for c in chunks]
    return sse([*frames, "data: [DONE]\n\n"])


def openai_error(
    status: int,
    message: str,
    *,
    type: str,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`."""
    body = {"error": {"message": message, "type": type, "param": None, "code": code}}
    return Reply(status, body, headers=headers or {})


# -- Anthropic Messages ----------------------------------------------------------

ANTHROPIC_MODEL = "claude-sonnet-4-6"


def text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def tool_use_block(id: str, name: str, input: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": id, "name": name, "input": input}


def anthropic_usage(
    input_tokens: int, output_tokens: int, *, cache_write: int = 0, cache_read: int = 0
) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
        "service_tier": "standard",
    }


def anthropic_message(
    content: Sequence[dict[str, Any]],
    *,
    stop_reason: str | None = None,
    model: str = ANTHROPIC_MODEL,
    usage: dict[str, Any] | None = None,
) -> Reply:
    """A `message` object from POST /v1/messages."""
    has_tools = any(b["type"] == "tool_use" for b in content)
    body = {
        "id": f"msg_fake{next(_ids)}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": list(content),
        "stop_reason": stop_reason or ("tool_use" if has_tools else "end_turn"),
        "stop_sequence": None,
        "stop_details": None,
        "usage": usage or anthropic_usage(25, 12),
    }
    return Reply(200, body, headers={"request-id": f"req_fake{next(_ids)}"})


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def anthropic_stream(
    blocks: Sequence[tuple[str, Any]],
    *,
    stop_reason: str = "end_turn",
    model: str = ANTHROPIC_MODEL,
    usage: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> Reply:
    """The Messages SSE stream: `message_start`, per block `content_block_start`,
    `content_block_delta`s (`text_delta` / `input_json_delta`, the latter opening
    with an empty piece as the API does) and `content_block_stop`, then
    `message_delta` (stop reason, cumulative output tokens) and `message_stop`.

    `blocks`: ("text", [pieces]) or ("tool_use", (id, name, [json pieces])).
    `error`: an `error` event body sent after the first block instead of the rest.
    """
    usage = usage or anthropic_usage(25, 12)
    start_usage = {**usage, "output_tokens": 1}
    frames = [
        _event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": f"msg_fake{next(_ids)}",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "stop_details": None,
                    "usage": start_usage,
                },
            },
        ),
        _event("ping", {"type": "ping"}),
    ]
    for index, (kind, spec) in enumerate(blocks):
        if kind == "text":
            block, deltas = text_block(""), [{"type": "text_delta", "text": p} for p in spec]
        else:
            cid, name, pieces = spec
            block = tool_use_block(cid, name, {})
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in ["", *pieces]]
        frames.append(
            _event(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": block},
            )
        )
        frames += [
            _event(
                "content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}
            )
            for d in deltas
        ]
        frames.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
        if error is not None:
            return sse([*frames, _event("error", {"type": "error", "error": error})])
    frames.append(
        _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        )
    )
    frames.append(_event("message_stop", {"type": "message_stop"}))
    return sse(frames)


def anthropic_error(
    status: int, type: str, message: str, *, headers: dict[str, str] | None = None
) -> Reply:
    """Anthropic's error body: `{"type": "error", "error": {"type", "message"}, "request_id"}`."""
    body = {
        "type": "error",
        "error": {"type": type, "message": message},
        "request_id": f"req_fake{next(_ids)}",
    }
    return Reply(status, body, headers={"request-id": body["request_id"], **(headers or {})})
