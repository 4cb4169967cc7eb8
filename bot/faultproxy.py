"""A fault-injecting HTTP proxy on 127.0.0.1, put between the bot and a Bot API server.

For ``python -m bot eval faults`` and the tests: the bot talks to the proxy as if it were
Telegram; the proxy forwards every request to the real (test) server, except that the calls
of a chosen method (``sendMessage``) meet the faults queued for them, in order:

* ``"500"``: answered ``500 Internal Server Error`` without being forwarded (not delivered);
* ``"drop"``: the connection is closed without forwarding and without an answer (what a
  dropped connection looks like to the client);
* ``"delay"``: forwarded at once (so delivered), its answer held back ``delay`` seconds
  (what a slow Telegram looks like: a client that gives up early cannot know it was sent).

Plain HTTP/1.1 with keep-alive, as python-telegram-bot (httpx) speaks it; bodies with a
Content-Length (no chunked uploads: the bot sends none). Loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import Counter, deque

import httpx

FAULT_KINDS = ("500", "drop", "delay")
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}


class FaultProxy:
    """``with FaultProxy(upstream_base="http://127.0.0.1:PORT") as proxy:``, then point the bot
    at ``proxy.url + "/bot"`` and queue faults with ``proxy.inject("sendMessage", "500", ...)``."""

    def __init__(self, upstream: str, *, delay: float = 20.0):
        self.upstream = upstream.rstrip("/")
        self.delay = delay
        self._faults: dict[str, deque[str]] = {}
        self._lock = threading.Lock()
        self.injected: Counter = Counter()  # fault kind -> times injected
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._client: httpx.AsyncClient | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task] = set()
        self.port: int | None = None

    # -- control ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def inject(self, method: str, *kinds: str) -> None:
        """Queue faults for the next calls of ``method`` (``None`` or ``"ok"``: one call passes)."""
        unknown = [k for k in kinds if k not in (*FAULT_KINDS, "ok", None)]
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; expected one of {FAULT_KINDS}")
        with self._lock:
            self._faults.setdefault(method, deque()).extend(k or "ok" for k in kinds)

    def pending(self, method: str) -> int:
        with self._lock:
            return len(self._faults.get(method, ()))

    def _next_fault(self, method: str) -> str | None:
        with self._lock:
            queue = self._faults.get(method)
            kind = queue.popleft() if queue else None
        if kind and kind != "ok":
            self.injected[kind] += 1
            return kind
        return None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="FaultProxy", daemon=True)
        self._thread.start()
        if not ready.wait(10) or self.port is None:
            raise RuntimeError("FaultProxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop

        async def startup():
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(120.0), limits=httpx.Limits(max_connections=512))
            self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]

        try:
            loop.run_until_complete(startup())
        finally:
            ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._loop = None

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._connections):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    # -- HTTP ------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                verb, target, _ = request_line.split(" ", 2)
                headers = {}
                for line in header_lines:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers[name.strip()] = value.strip()
                length = int(next((v for k, v in headers.items() if k.lower() == "content-length"), "0") or 0)
                body = await reader.readexactly(length) if length else b""
                method = target.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
                fault = self._next_fault(method)
                if fault == "drop":
                    return  # close without a word: the request never reached the server
                if fault == "500":
                    payload = json.dumps({"ok": False, "error_code": 500, "description": "Internal Server Error"}).encode()
                    await self._respond(writer, 500, "Internal Server Error", {"Content-Type": "application/json"}, payload)
                    continue
                forwarded = {k: v for k, v in headers.items() if k.lower() not in _HOP_HEADERS}
                response = await self._client.request(verb, self.upstream + target, headers=forwarded, content=body)
                if fault == "delay":
                    await asyncio.sleep(self.delay)
                out_headers = {k: v for k, v in response.headers.items() if k.lower() not in _HOP_HEADERS}
                await self._respond(writer, response.status_code, response.reason_phrase, out_headers, response.content)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass  # the client went away
        except httpx.HTTPError:
            pass  # the upstream went away (shutting down): drop the client too
        except asyncio.CancelledError:
            pass  # the proxy is stopping
        finally:
            self._tasks.discard(task)
            self._connections.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    async def _respond(writer: asyncio.StreamWriter, status: int, reason: str, headers: dict, body: bytes) -> None:
        lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers.items()), f"Content-Length: {len(body)}", "", ""]
        writer.write("\r\n".join(lines).encode("latin-1") + body)
        await writer.drain()
