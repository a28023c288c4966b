"""A local webhook receiver for delivery tests: a threaded http.server on 127.0.0.1 that records
every POST (its Idempotency-Key header and JSON body) and answers 200, after an optional delay."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple


class Received(NamedTuple):
    """One POST as the sink saw it."""

    key: str
    body: dict[str, Any]
    user_agent: str
    #: When it arrived (time.monotonic()).
    at: float


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # several senders may connect at once


class Sink:
    """`with Sink(delay=0.001) as sink:` — `sink.url` takes POSTs; `sink.received` lists them in
    order of arrival; `sink.keys()` counts them by Idempotency-Key."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.received: list[Received] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                try:
                    length = int(self.headers.get("Content-Length", "0"))
                    raw = self.rfile.read(length)
                    key = self.headers.get("Idempotency-Key") or ""
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        body = {"unparsable": raw.decode("utf-8", "replace")}
                    sink._add(Received(key, body, self.headers.get("User-Agent") or "", time.monotonic()))
                    if sink.delay:
                        time.sleep(sink.delay)
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender was killed mid-request: what it sent is recorded

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="webhook-sink", daemon=True)

    def _add(self, item: Received) -> None:
        with self._lock:
            self.received.append(item)

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def keys(self) -> Counter[str]:
        return Counter(r.key for r in self.snapshot())

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def __enter__(self) -> Sink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
