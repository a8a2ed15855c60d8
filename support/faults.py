"""A fault-injecting HTTPS proxy in front of the real API server, for the faults a real
server cannot be made to produce on purpose: an answer lost after the write committed, a
5xx, a slow answer, a dropped watch.

Everything else passes through unchanged (headers, bodies, streamed watches), so the
server still authenticates, authorises, validates and stores. The proxy serves with the
API server's own certificate (valid for 127.0.0.1), on the test's event loop: clients
that block (the `kubernetes` client) must run in other threads, as the agent does.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from .cluster import Kube

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host",
              "upgrade", "proxy-connection", "te", "trailer", "content-encoding"}


@dataclass
class Fault:
    """Where `matches(method, path_and_query)`: `status` answered instead of the server's
    answer (after forwarding the request if `after_forwarding`: the write happens, its
    answer is lost; None: the server's answer passes), `delay` seconds added first, the
    request held until `hold` is set, `before` run first (compact etcd, say), at most
    `times` times (None: always)."""

    matches: Callable[[str, str], bool]
    status: int | None = 500
    after_forwarding: bool = False
    delay: float = 0.0
    hold: asyncio.Event | None = None
    before: Callable[[], object] | None = None
    times: int | None = 1
    hits: list[str] = field(default_factory=list)

    def take(self, method: str, path: str) -> bool:
        if self.times is not None and len(self.hits) >= self.times:
            return False
        if not self.matches(method, path):
            return False
        self.hits.append(f"{method} {path}")
        return True


class FaultProxy:
    """`async with FaultProxy(kube) as proxy:` clients use `proxy.url`; `proxy.faults`
    (append Faults) says what goes wrong; `cut()` drops every open connection (watches
    included), as a network blip does."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.faults: list[Fault] = []
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._open: set[web.StreamResponse] = set()
        self.gone: list[str] = []
        """Requests answered 410 Gone, or whose watch stream carried a 410 ERROR event."""

    async def __aenter__(self) -> FaultProxy:
        pki = self.kube.session.plane.pki
        serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        serving.load_cert_chain(pki.path("apiserver.crt"), pki.path("apiserver.key"))
        upstream = ssl.create_default_context(cafile=str(pki.ca))
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=upstream),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5), auto_decompress=False)
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=serving)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"https://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.cut()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def cut(self) -> None:
        """Drop every connection in flight: their clients see the stream end."""
        for response in list(self._open):
            with contextlib.suppress(Exception):
                transport = response._req.transport if response._req else None
                if transport is not None:
                    transport.abort()
        self._open.clear()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        fault = next((f for f in self.faults if f.take(request.method, request.path_qs)),
                     None)
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)
        if fault is not None and fault.hold is not None:
            await fault.hold.wait()
        if fault is not None and fault.before is not None:
            fault.before()
        if fault is not None and fault.status is not None and not fault.after_forwarding:
            return _error(fault.status)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        async with self._session.request(request.method, self.kube.server_url + request.path_qs,
                                         headers=headers, data=body or None,
                                         # as sent: no Content-Type where the client
                                         # sent none (aiohttp would say octet-stream)
                                         skip_auto_headers=("Content-Type",
                                                            "Accept-Encoding")) as upstream:
            if fault is not None and fault.status is not None:
                await upstream.read()  # the server did the work; its answer is lost
                return _error(fault.status)
            response = web.StreamResponse(status=upstream.status, headers={
                k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP})
            if upstream.headers.get("Content-Encoding"):
                response.headers["Content-Encoding"] = upstream.headers["Content-Encoding"]
            await response.prepare(request)
            self._open.add(response)
            if upstream.status == 410:
                self.gone.append(request.path_qs)
            try:
                async for chunk in _chunks(upstream):
                    if b'"code":410' in chunk and b'"type":"ERROR"' in chunk:
                        self.gone.append(request.path_qs)
                    await response.write(chunk)
            except (ConnectionError, aiohttp.ClientError):
                pass
            finally:
                self._open.discard(response)
            with contextlib.suppress(ConnectionError):
                await response.write_eof()
            return response


async def _chunks(upstream: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    async for chunk in upstream.content.iter_any():
        yield chunk


REASONS = {410: "Expired", 429: "TooManyRequests", 500: "InternalError",
           503: "ServiceUnavailable", 504: "Timeout"}


def _error(status: int) -> web.Response:
    """A Status as kube-apiserver writes one for `status`."""
    return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                              "message": "injected by the test's fault proxy",
                              "reason": REASONS.get(status, "InternalError"), "code": status},
                             status=status)
