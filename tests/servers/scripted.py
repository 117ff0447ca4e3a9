"""A threaded HTTP server on 127.0.0.1 that records requests and plays a queue of replies."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: dict | None


@dataclass
class Reply:
    """One scripted response: JSON, server-sent events, a dropped connection, or a stall."""

    status: int = 200
    json: object = None
    events: list[tuple[str, object]] | None = None  # (event name, data) for text/event-stream
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering
    cut_after: int | None = None  # close the stream after this many events, unterminated
    delay: float = 0.0  # seconds to wait before answering (client timeouts)


Script = Reply | Callable[[Request], Reply]


class ScriptedServer:
    """Answers each request with the next queued reply; ``fallback`` once the queue is empty."""

    def __init__(self, fallback: Script | None = None):
        self.queue: deque[Script] = deque()
        self.fallback = fallback
        self.requests: list[Request] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._server.handle_error = lambda request, address: None  # clients that hang up early
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def play(self, *replies: Script) -> ScriptedServer:
        self.queue.extend(replies)
        return self

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next(self, request: Request) -> Reply:
        script = self.queue.popleft() if self.queue else self.fallback
        if script is None:
            return Reply(500, {"error": {"type": "test_error", "message": "script exhausted"}})
        return script(request) if callable(script) else script

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # chunked streams, so a cut stream is seen as cut

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                request = Request(
                    "POST",
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    json.loads(raw) if raw else None,
                )
                server.requests.append(request)
                self._answer(server._next(request))

            def _answer(self, reply: Reply) -> None:
                time.sleep(reply.delay)
                if reply.drop:
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.events is not None:
                    self._stream(reply)
                    return
                body = json.dumps(reply.json).encode()
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _stream(self, reply: Reply) -> None:
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                for name, data in reply.events[: reply.cut_after]:
                    chunk = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                if reply.cut_after is None:
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.close_connection = True

            def log_message(self, *args):  # keep test output quiet
                pass

        return Handler
