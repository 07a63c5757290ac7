"""A scripted HTTP server that speaks the OpenAI Chat Completions and Anthropic Messages wire formats.

Tests queue canned answers (JSON bodies, error statuses, server-sent event streams) and point the real
SDK clients at ``base_url``; the server records every request so tests can assert what the SDK sent. It
listens on 127.0.0.1 only and never talks to the internet.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Canned:
    """One scripted answer: a JSON body, or (with ``events``) a server-sent event stream."""

    status: int = 200
    body: Any = None
    events: list[tuple[str | None, Any]] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Recorded:
    """A request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


class FakeProviderServer:
    """Serve canned answers in order; record what was asked."""

    def __init__(self) -> None:
        self._script: deque[Canned] = deque()
        self._lock = threading.Lock()
        self.requests: list[Recorded] = []
        self._httpd = _QuietServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-provider", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()

    def enqueue(self, *answers: Canned) -> None:
        with self._lock:
            self._script.extend(answers)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._script)

    @property
    def last_body(self) -> Any:
        return self.requests[-1].body

    def _next(self, request: Recorded) -> Canned:
        with self._lock:
            self.requests.append(request)
            if self._script:
                return self._script.popleft()
        return Canned(
            status=500,
            body={"error": {"message": "the fake provider has no scripted answer left", "type": "server_error"}},
        )


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that drops its connection (a closed SDK client, a cancelled stream) is not a test failure.
        pass


def _make_handler(server: FakeProviderServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            headers = {k.lower(): v for k, v in self.headers.items()}
            answer = server._next(Recorded("POST", self.path, headers, body))
            if answer.events is None:
                self._send_json(answer)
            else:
                self._send_events(answer)

        def _send_json(self, answer: Canned) -> None:
            data = json.dumps(answer.body).encode()
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _send_events(self, answer: Canned) -> None:
            self.send_response(answer.status)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            for event, data in answer.events or []:
                text = data if isinstance(data, str) else json.dumps(data)
                frame = (f"event: {event}\n" if event else "") + f"data: {text}\n\n"
                self._chunk(frame.encode())
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


# --- OpenAI Chat Completions wire format -------------------------------------------------------------------


def openai_completion(
    text: str | None = None,
    *,
    tool_calls: Sequence[tuple[str, str, str]] = (),
    finish_reason: str | None = None,
    usage: tuple[int, int] = (10, 5),
    model: str = "gpt-test",
) -> Canned:
    """A ``chat.completion`` body; ``tool_calls`` are ``(id, name, arguments_json)``."""
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if tool_calls:
        message["tool_calls"] = [
            {"id": id_, "type": "function", "function": {"name": name, "arguments": args}}
            for id_, name, args in tool_calls
        ]
    return Canned(
        body={
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": finish_reason or ("tool_calls" if tool_calls else "stop"),
                }
            ],
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
        }
    )


def openai_stream(
    text_pieces: Sequence[str] = (),
    *,
    tool_calls: Sequence[tuple[str, str, Sequence[str]]] = (),
    finish_reason: str | None = None,
    usage: tuple[int, int] | None = (10, 5),
    model: str = "gpt-test",
) -> Canned:
    """A streamed completion: text pieces, then tool calls ``(id, name, argument_chunks)``, then usage."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    events: list[tuple[str | None, Any]] = [(None, chunk({"role": "assistant", "content": ""}))]
    events += [(None, chunk({"content": piece})) for piece in text_pieces]
    for i, (id_, name, arg_chunks) in enumerate(tool_calls):
        first = {"index": i, "id": id_, "type": "function", "function": {"name": name, "arguments": ""}}
        events.append((None, chunk({"tool_calls": [first]})))
        events += [
            (None, chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})) for piece in arg_chunks
        ]
    events.append((None, chunk({}, finish_reason or ("tool_calls" if tool_calls else "stop"))))
    if usage is not None:
        events.append(
            (
                None,
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion.chunk",
                    "created": 1_700_000_000,
                    "model": model,
                    "choices": [],
                    "usage": {
                        "prompt_tokens": usage[0],
                        "completion_tokens": usage[1],
                        "total_tokens": sum(usage),
                    },
                },
            )
        )
    events.append((None, "[DONE]"))
    return Canned(events=events)


def openai_error(status: int, message: str, *, headers: dict[str, str] | None = None) -> Canned:
    kind = "rate_limit_exceeded" if status == 429 else "invalid_request_error" if status < 500 else "server_error"
    return Canned(
        status=status,
        body={"error": {"message": message, "type": kind, "param": None, "code": None}},
        headers=headers or {},
    )


# --- Anthropic Messages wire format ------------------------------------------------------------------------


def anthropic_message(
    text: str | None = None,
    *,
    tool_uses: Sequence[tuple[str, str, dict[str, Any]]] = (),
    stop_reason: str | None = None,
    usage: tuple[int, int] = (10, 5),
    model: str = "claude-test",
) -> Canned:
    """A ``message`` body; ``tool_uses`` are ``(id, name, input)``."""
    content: list[dict[str, Any]] = []
    if text is not None:
        content.append({"type": "text", "text": text})
    content += [{"type": "tool_use", "id": id_, "name": name, "input": input_} for id_, name, input_ in tool_uses]
    return Canned(
        body={
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason or ("tool_use" if tool_uses else "end_turn"),
            "stop_sequence": None,
            "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
        }
    )


def anthropic_stream(
    text_pieces: Sequence[str] = (),
    *,
    tool_uses: Sequence[tuple[str, str, Sequence[str]]] = (),
    stop_reason: str | None = None,
    usage: tuple[int, int] = (10, 5),
    model: str = "claude-test",
    error: dict[str, Any] | None = None,
) -> Canned:
    """A streamed message: a text block, then tool_use blocks ``(id, name, input_json_chunks)``.

    With ``error``, the stream breaks off with an ``error`` event after the text.
    """
    start = {
        "type": "message",
        "id": "msg_1",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": usage[0], "output_tokens": 1},
    }
    events: list[tuple[str | None, Any]] = [("message_start", {"type": "message_start", "message": start})]
    events.append(("ping", {"type": "ping"}))
    index = 0
    if text_pieces:
        block = {"type": "text", "text": ""}
        events.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": block}))
        for piece in text_pieces:
            delta = {"type": "text_delta", "text": piece}
            events.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    if error is not None:
        events.append(("error", {"type": "error", "error": error}))
        return Canned(events=events)
    for id_, name, chunks in tool_uses:
        block = {"type": "tool_use", "id": id_, "name": name, "input": {}}
        events.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": block}))
        for piece in chunks:
            delta = {"type": "input_json_delta", "partial_json": piece}
            events.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    message_delta = {
        "type": "message_delta",
        "delta": {
            "stop_reason": stop_reason or ("tool_use" if tool_uses else "end_turn"),
            "stop_sequence": None,
        },
        "usage": {"output_tokens": usage[1]},
    }
    events.append(("message_delta", message_delta))
    events.append(("message_stop", {"type": "message_stop"}))
    return Canned(events=events)


def anthropic_error(
    status: int, message: str, *, kind: str | None = None, headers: dict[str, str] | None = None
) -> Canned:
    kind = kind or {429: "rate_limit_error", 529: "overloaded_error"}.get(
        status, "invalid_request_error" if status < 500 else "api_error"
    )
    return Canned(
        status=status,
        body={"type": "error", "error": {"type": kind, "message": message}},
        headers=headers or {},
    )


def openai_stream_error(
    error: dict[str, Any], text_pieces: Sequence[str] = (), *, model: str = "gpt-test", provider: str = "openrouter"
) -> Canned:
    """A 200 stream that breaks off with an error chunk after ``text_pieces``.

    Provenance: OpenRouter's documented mid-stream error (docs "Streaming" → "Mid-stream errors" and "Errors and
    Debugging"): once tokens were sent the status stays 200, and the error arrives as an SSE data chunk carrying
    a top-level ``error`` object (``code`` a number or a string, ``message``) beside a choice whose
    ``finish_reason`` is ``"error"``; vLLM and LiteLLM proxies send the same top-level ``error`` object.
    """
    stream = openai_stream(text_pieces, usage=None, model=model)
    assert stream.events is not None
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "provider": provider,
        "error": error,
        "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
    }
    # Drop the normal ending (the finish chunk and [DONE]); the error chunk ends the stream.
    stream.events[-2:] = [(None, chunk)]
    return stream


def anthropic_message_blocks(
    content: list[dict[str, Any]],
    *,
    stop_reason: str = "end_turn",
    usage: dict[str, Any] | None = None,
    model: str = "claude-test",
) -> Canned:
    """A ``message`` body with the content blocks and usage object given as the API writes them."""
    return Canned(
        body={
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage or {"input_tokens": 10, "output_tokens": 5},
        }
    )


def anthropic_block_stream(
    blocks: Sequence[tuple[dict[str, Any], Sequence[dict[str, Any]]]],
    *,
    stop_reason: str = "end_turn",
    start_usage: dict[str, Any] | None = None,
    end_usage: dict[str, Any] | None = None,
    model: str = "claude-test",
) -> Canned:
    """A streamed message from ``(content_block, deltas)`` pairs, as "Streaming Messages" documents the events.

    Each block opens with ``content_block_start`` (the block as given), then one ``content_block_delta`` per
    delta, then ``content_block_stop``; ``message_start`` carries ``start_usage``, ``message_delta`` ``end_usage``.
    """
    start = {
        "type": "message",
        "id": "msg_1",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": start_usage or {"input_tokens": 10, "output_tokens": 1},
    }
    events: list[tuple[str | None, Any]] = [("message_start", {"type": "message_start", "message": start})]
    for index, (block, deltas) in enumerate(blocks):
        events.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": block}))
        for delta in deltas:
            events.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    message_delta = {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": end_usage or {"output_tokens": 5},
    }
    events.append(("message_delta", message_delta))
    events.append(("message_stop", {"type": "message_stop"}))
    return Canned(events=events)
