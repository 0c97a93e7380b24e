"""The emulator's HTTP side: routing, the gateway check, fault hooks, the request log.

A request goes through ``Emulator.handle`` (no sockets involved), in this order:

1. route by method and path: an unknown API is 404 ``APIGW.0101``, before any authentication,
   as the gateway looks the API up first;
2. under the state lock: apply due arrivals, then (``/v1/...`` only) authenticate with the
   gateway and check the project: the path's ``project_id`` and any ``X-Project-Id`` must be
   the credential's project, else 403 ``EndPoint.0004`` (guess: the documented VPCEP 403; the
   real answer to a foreign project is not documented);
3. the fault hooks, outside the lock, in order: the first that returns a ``Reply`` answers
   instead of the operation (the later fault-injection work plugs in here);
4. under the state lock: the operation itself.

Every answer carries ``X-Request-Id`` (uuid4 hex) and is recorded in ``requests``.
"""

from __future__ import annotations

import email.utils
import re
import selectors
import socket
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, Protocol
from urllib.parse import unquote

from approver.emulator.gateway import Gateway
from approver.emulator.scenario import Scenario
from approver.emulator.state import Cloud
from approver.emulator.wire import (
    EmulatorError,
    Incoming,
    Reply,
    error_body,
    gateway_error,
    vpcep_error,
)

MAX_BODY: Final = 12 * 1024 * 1024  # AK/SK-signed requests may carry up to 12 MB [DOC-HW]
UNKNOWN: Final = "Unknown"
_SERVICES: Final = r"/v1/(?P<project_id>[^/]+)/vpc-endpoint-services"
# "describe" and "public" are other APIs under the same prefix (not modelled), not service ids.
_SERVICE: Final = _SERVICES + r"/(?P<service_id>(?!describe$|public$)[^/]+)"
VERSION_UPDATED: Final = "2018-09-30T00:00:00Z"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RequestLog:
    """One request the emulator answered."""

    method: str
    path: str
    query: str
    status: int
    error_code: str | None
    operation: str
    request_id: str
    at: datetime
    ak: str | None = None


class FaultHook(Protocol):
    """Consulted after authentication; a ``Reply`` replaces the operation's answer."""

    def __call__(self, request: Incoming, operation: str) -> Reply | None: ...


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    operation: str
    signed: bool


def _route(method: str, pattern: str, operation: str, *, signed: bool = True) -> _Route:
    return _Route(method, re.compile(f"^{pattern}/?$"), operation, signed)


ROUTES: Final = (
    _route("GET", "", "ListVersionDetails", signed=False),
    _route("GET", "/v1", "ListSpecifiedVersionDetails", signed=False),
    _route("GET", _SERVICES, "ListEndpointService"),
    _route("GET", _SERVICE, "ListServiceDetails"),
    _route("GET", _SERVICE + "/connections", "ListServiceConnections"),
    _route("POST", _SERVICE + "/connections/action", "AcceptOrRejectEndpoint"),
    _route("PUT", _SERVICE + "/connections/description", "UpdateEndpointConnectionsDesc"),
)


class Emulator:
    """A local VPCEP API on loopback, speaking the real wire format. See the package docs."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        clock: Callable[[], datetime] = utc_now,
        host: str = "127.0.0.1",
        port: int = 0,
        on_request: Callable[[RequestLog], None] | None = None,
    ) -> None:
        self.scenario = scenario
        self.faults: list[FaultHook] = []
        self._clock = clock
        self._host = host
        self._port = port
        self._on_request = on_request
        self._lock = threading.Lock()
        self._cloud = Cloud(scenario, clock())
        self._gateway = Gateway(
            scenario.credentials,
            lockout_after=scenario.lockout_after,
            lockout_seconds=scenario.lockout_seconds,
        )
        self._log: list[RequestLog] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Listen and serve in a background thread; returns self."""
        if self._server is not None:
            raise RuntimeError("emulator already started")
        server_class = _Server6 if ":" in self._host else _Server
        self._server = server_class((self._host, self._port), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve,
            name=f"vpcep-emulator-{self._server.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every connection, wait for the handler threads."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.stop_serving()
        thread.join()
        server.close_connections()
        server.server_close()
        self._server = self._thread = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL clients use, e.g. ``http://127.0.0.1:41234``."""
        if self._server is None:
            raise RuntimeError("emulator not started")
        host = self._host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self._server.server_port}"

    # -- state, for tests and the CLI -----------------------------------------------------

    def tick(self) -> None:
        """Apply the arrivals due at ``clock()`` (also done before every request)."""
        with self._lock:
            self._cloud.tick(self._clock())

    def connections(self, service_id: str) -> list[dict[str, Any]]:
        """All connections of a service (id or name), oldest first, in the API's JSON shape."""
        with self._lock:
            self._cloud.tick(self._clock())
            conns = self._cloud.service(service_id).connections.values()
            return [c.to_json() for c in sorted(conns, key=lambda c: (c.created_at, c.id))]

    def connection(self, service_id: str, endpoint_id: str) -> dict[str, Any]:
        """One connection in the API's JSON shape; ``KeyError`` if there is none."""
        with self._lock:
            self._cloud.tick(self._clock())
            return self._cloud.service(service_id).connections[endpoint_id].to_json()

    def add_connection(
        self,
        service_id: str,
        *,
        domain_id: str,
        description: str = "",
        status: str = "pendingAcceptance",
        endpoint_id: str | None = None,
    ) -> dict[str, Any]:
        """Create a connection now (id and marker generated unless given)."""
        with self._lock:
            now = self._clock()
            self._cloud.tick(now)
            return self._cloud.add_connection(
                service_id,
                domain_id=domain_id,
                description=description,
                status=status,
                endpoint_id=endpoint_id,
                now=now,
            )

    def set_status(self, service_id: str, endpoint_id: str, status: str) -> None:
        """Move a connection to any status, as the cloud would on its own (creating, ...)."""
        with self._lock:
            self._cloud.set_status(service_id, endpoint_id, status, self._clock())

    @property
    def requests(self) -> list[RequestLog]:
        """Every request answered so far, oldest first (a copy)."""
        with self._lock:
            return list(self._log)

    def count(self, operation: str, *, status: int | None = None) -> int:
        """How many requests of ``operation`` were answered (with ``status``, if given)."""
        with self._lock:
            return sum(
                1
                for r in self._log
                if r.operation == operation and (status is None or r.status == status)
            )

    def now(self) -> datetime:
        """The emulator's clock."""
        return self._clock()

    # -- request handling -----------------------------------------------------------------

    def handle(self, request: Incoming) -> Reply:
        """Answer one request (see the module docstring for the order of checks)."""
        request_id = uuid.uuid4().hex
        route, params = _match(request.method, request.path)
        operation = route.operation if route else UNKNOWN
        ak: str | None = None
        try:
            if route is None:
                raise gateway_error("APIGW.0101")
            with self._lock:
                now = self._clock()
                self._cloud.tick(now)
                if route.signed:
                    credential = self._gateway.authenticate(request, now)
                    ak = credential.ak
                    header_project = request.header("x-project-id")
                    if params["project_id"] != credential.project_id or (
                        header_project is not None
                        and header_project.strip() != credential.project_id
                    ):
                        raise vpcep_error("EndPoint.0004")
            reply = self._fault(request, operation)
            if reply is None:
                with self._lock:
                    payload = self._operate(route.operation, params, request)
                reply = Reply.json(200, payload)
        except EmulatorError as exc:
            reply = self._error(exc, request_id)
        return self._finish(request, reply, operation, request_id, ak)

    def refuse(self, request: Incoming, error: EmulatorError) -> Reply:
        """Answer with ``error`` without handling (the transport found the request unusable)."""
        request_id = uuid.uuid4().hex
        return self._finish(request, self._error(error, request_id), UNKNOWN, request_id, None)

    def _error(self, error: EmulatorError, request_id: str) -> Reply:
        body = error_body(error, request_id, self.scenario.error_shape)
        return Reply.json(error.status, body, error_code=error.code)

    def _fault(self, request: Incoming, operation: str) -> Reply | None:
        for hook in list(self.faults):
            reply = hook(request, operation)
            if reply is not None:
                return reply
        return None

    def _operate(self, operation: str, params: dict[str, str], request: Incoming) -> object:
        cloud, now = self._cloud, self._clock()
        project, service = params.get("project_id", ""), params.get("service_id", "")
        if operation == "ListVersionDetails":
            return {"versions": [self._version(request)]}
        if operation == "ListSpecifiedVersionDetails":
            return {"version": self._version(request)}
        if operation == "ListEndpointService":
            return cloud.list_services(project, request.query)
        if operation == "ListServiceDetails":
            return cloud.service_details(project, service)
        if operation == "ListServiceConnections":
            return cloud.list_connections(project, service, request.query)
        if operation == "AcceptOrRejectEndpoint":
            return cloud.accept_or_reject(project, service, request.body, now)
        if operation == "UpdateEndpointConnectionsDesc":
            return cloud.update_descriptions(project, service, request.body, now)
        raise gateway_error("APIGW.0101")

    def _version(self, request: Incoming) -> dict[str, Any]:
        host = request.header("host")
        base = f"http://{host}" if host else self.url
        return {
            "id": "v1",
            "links": [{"href": f"{base}/v1/", "rel": "self"}],
            "min_version": "",
            "status": "CURRENT",
            "updated": VERSION_UPDATED,
            "version": "",
        }

    def _finish(
        self, request: Incoming, reply: Reply, operation: str, request_id: str, ak: str | None
    ) -> Reply:
        reply = Reply(
            reply.status,
            reply.body,
            (*reply.headers, ("X-Request-Id", request_id)),
            reply.error_code,
        )
        entry = RequestLog(
            method=request.method,
            path=request.path,
            query=request.query,
            status=reply.status,
            error_code=reply.error_code,
            operation=operation,
            request_id=request_id,
            at=self._clock(),
            ak=ak,
        )
        with self._lock:
            self._log.append(entry)
        if self._on_request is not None:
            self._on_request(entry)
        return reply


def _match(method: str, path: str) -> tuple[_Route | None, dict[str, str]]:
    for route in ROUTES:
        found = route.pattern.match(path)
        if found and route.method == method:
            return route, {k: unquote(v) for k, v in found.groupdict().items()}
    return None, {}


# -- the socket side -------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    """Tracks open connections so that ``stop`` can close idle keep-alive ones and join."""

    daemon_threads = False
    block_on_close = True
    timeout = 0.0  # handle_request() is called only once the listening socket is ready

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        emulator: Emulator,
    ) -> None:
        self.emulator = emulator
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        super().__init__(address, handler)

    def serve(self) -> None:
        """``serve_forever`` that ``stop_serving`` wakes at once, not after a poll interval."""
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping.is_set():
                ready = selector.select()
                if not self._stopping.is_set() and any(key.fileobj is self for key, _ in ready):
                    self.handle_request()

    def stop_serving(self) -> None:
        self._stopping.set()
        self._wake_w.send(b"\0")

    def server_close(self) -> None:
        super().server_close()  # joins the handler threads
        self._wake_r.close()
        self._wake_w.close()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-request is normal here; anything else is printed."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120  # idle keep-alive connections are closed after this
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every answer.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _serve(self) -> None:
        emulator = self.server.emulator
        path, _, query = self.path.partition("?")
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), value)
        try:
            body = self._read_body(headers)
        except EmulatorError as exc:
            self.close_connection = True
            incoming = Incoming(self.command, path, query, headers, b"")
            self._send(emulator.refuse(incoming, exc))
            return
        self._send(emulator.handle(Incoming(self.command, path, query, headers, body)))

    def _read_body(self, headers: dict[str, str]) -> bytes:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            size = 0
            while True:
                length = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if length == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                size += length
                if size > MAX_BODY:
                    raise gateway_error("APIGW.0201")
                chunks.append(self.rfile.read(length))
                self.rfile.readline()
        raw_length = headers.get("content-length", "0").strip() or "0"
        length = int(raw_length) if raw_length.isdigit() else 0
        if length > MAX_BODY:
            raise gateway_error("APIGW.0201")
        return self.rfile.read(length) if length else b""

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def version_string(self) -> str:
        return "api-gateway"  # what Huawei's gateway sends as Server

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The ``Date`` header follows the emulator's clock, so clients can estimate skew."""
        now = self.server.emulator.now().astimezone(UTC)
        return email.utils.format_datetime(now, usegmt=True)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the emulator keeps its own request log."""
