"""A scripted policy behind the OpenAI chat-completions HTTP API, for deterministic runs.

`ScriptedPolicyServer(script)` serves `POST /v1/chat/completions` and `GET /v1/models` on a
free loopback port in a background thread. `script(request_body)` decides each reply: a
`Reply` (content, reasoning, tool calls as (name, arguments-text) pairs, finish reason), or a
`Status` (an HTTP error such as 429 or 503), or a `Hang` (no answer for N seconds). Replies
carry usage figures counted in whitespace-separated words, so token limits can be exercised.
`stop()` is a real outage: it closes the listening socket and every open keep-alive connection,
so clients see refused connections; a new server on the same `port` brings the endpoint back.
It is a stand-in for a model where none can answer meaningfully (tests, the offline demo's
teacher); it is not a model and learns nothing.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclasses.dataclass(frozen=True)
class Reply:
    content: str = ""
    tool_calls: tuple[tuple[str, str], ...] = ()
    reasoning: str = ""
    finish_reason: str | None = None


@dataclasses.dataclass(frozen=True)
class Status:
    code: int
    body: str = "scripted error"
    retry_after: float | None = None


@dataclasses.dataclass(frozen=True)
class Hang:
    seconds: float


Script = Callable[[dict], "Reply | Status | Hang"]


def _words(text: str) -> int:
    return len(text.split())


def completion_payload(model: str, reply: Reply, request: dict) -> dict:
    calls = [
        {"id": f"call_{uuid.uuid4().hex[:12]}", "type": "function", "function": {"name": name, "arguments": arguments}}
        for name, arguments in reply.tool_calls
    ]
    message: dict = {"role": "assistant", "content": reply.content or None}
    if calls:
        message["tool_calls"] = calls
    if reply.reasoning:
        message["reasoning_content"] = reply.reasoning
    prompt_tokens = sum(_words(str(m.get("content") or "")) + 4 for m in request.get("messages", []))
    completion_tokens = (
        _words(reply.content) + _words(reply.reasoning) + sum(_words(a) + 4 for _n, a in reply.tool_calls)
    )
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": reply.finish_reason or ("tool_calls" if calls else "stop"),
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    stopping = False

    def handle_error(self, request, client_address) -> None:
        if self.stopping:
            return  # a connection cut by stop(): that is the outage, not an error to print
        super().handle_error(request, client_address)


class ScriptedPolicyServer:
    def __init__(self, script: Script, model: str = "scripted-policy", host: str = "127.0.0.1", port: int = 0) -> None:
        self.script, self.model = script, model
        self.requests: list[dict] = []
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with server._lock:
                    server._connections.add(self.connection)

            def finish(self) -> None:
                with server._lock:
                    server._connections.discard(self.connection)
                super().finish()

            def log_message(self, *args) -> None:
                return None

            def _send(self, code: int, body: dict | str, headers: dict[str, str] | None = None) -> None:
                data = (json.dumps(body) if isinstance(body, dict) else body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": server.model, "object": "model"}]})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    request = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    self._send(400, {"error": "body is not JSON"})
                    return
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": "not found"})
                    return
                server.requests.append(request)
                action = server.script(request)
                if isinstance(action, Hang):
                    time.sleep(action.seconds)
                    self._send(504, {"error": "hung"})
                elif isinstance(action, Status):
                    headers = {"Retry-After": str(action.retry_after)} if action.retry_after is not None else None
                    self._send(action.code, {"error": action.body}, headers)
                else:
                    self._send(200, completion_payload(server.model, action, request))

        self._http = _HTTPServer((host, port), Handler)
        self._thread = threading.Thread(target=self._http.serve_forever, name="scripted-policy", daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def port(self) -> int:
        return self._http.server_address[1]

    def start(self) -> ScriptedPolicyServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.stopping = True
        self._http.shutdown()
        self._http.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the client

    def __enter__(self) -> ScriptedPolicyServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
