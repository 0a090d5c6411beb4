"""The WSGI app and the threaded server that hosts PostgREST + Storage subsets."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import psycopg
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request
from werkzeug.http import HTTP_STATUS_CODES

from .faults import Faults
from .gotrue import AuthAdminHandler
from .openapi import build_openapi
from .postgrest import PostgrestHandler, Response, error_response
from .catalog import PgrstError, from_pg_error
from .keys import DEFAULT_SECRET, BadToken, role_of
from .storage import StorageHandler, storage_refusal

DEFAULT_BUCKETS = ("workspace-temp", "user-library")


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:  # no per-request stderr lines
        pass


def _gateway_error(message: str, hint: str) -> Response:
    """What the platform's gateway answers in front of Supabase Auth for a missing or unknown key."""
    return Response(401, json.dumps({"message": message, "hint": hint}).encode(),
                    {"Content-Type": "application/json; charset=utf-8"})


class SupabaseTestServer:
    """A strict local stand-in for Supabase's /rest/v1 and /storage/v1 APIs."""

    def __init__(
        self,
        dsn: str,
        storage_root: Path,
        service_key: str,
        schema: str = "public",
        *,
        jwt_secret: str = DEFAULT_SECRET,
        buckets: tuple[str, ...] = DEFAULT_BUCKETS,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
    ) -> None:
        if not service_key:
            raise ValueError("service_key is required")
        self.dsn = dsn
        self.storage_root = Path(storage_root)
        self.service_key = service_key
        self.jwt_secret = jwt_secret
        self.schema = schema
        self.host = host
        self._port = port
        if latency < 0:
            raise ValueError("latency must be >= 0 seconds")
        # A constant delay before every request is handled: a network round trip to a hosted project,
        # for the benchmark (docs/testing-supabase-server.md, "Latency").
        self.latency = latency
        self.faults = Faults()
        self._postgrest = PostgrestHandler(dsn, schema)
        self._storage = StorageHandler(self.storage_root, buckets, dsn=dsn)
        self._auth_admin = AuthAdminHandler(dsn, jwt_secret)
        self._lock = threading.Lock()
        self.request_count = 0
        self.requests: list[tuple[str, str, str]] = []
        self.delayed = 0  # requests that waited `latency` seconds
        self.in_flight = 0  # requests being handled now
        self.max_in_flight = 0  # the most handled at once since the last reset_counters()
        self._server = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("server not started")
        return f"http://{self.host}:{self._server.server_port}"

    def start(self) -> SupabaseTestServer:
        if self._server is not None:
            return self
        with psycopg.connect(self.dsn) as conn:  # fail fast on a bad DSN
            conn.execute("SELECT 1")
        self._storage.sync_catalogue()  # storage.objects rows for the objects already on disk
        self._server = make_server(self.host, self._port, self._wsgi, threaded=True,
                                   request_handler=_QuietHandler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="supabase-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None
        self._postgrest.close()
        self._storage.close()

    def __enter__(self) -> SupabaseTestServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def lose_bytes(self, bucket: str, key: str) -> None:
        """Keep the object listed but delete its bytes: downloads and copies of it answer 500."""
        self._storage.lose_bytes(bucket, key)

    def sync_catalogue(self) -> None:
        """Give files put on disk while the server runs their storage.objects rows (objects_table.py)."""
        self._storage.sync_catalogue()

    def reset_counters(self) -> None:
        with self._lock:
            self.request_count = 0
            self.requests = []
            self.delayed = 0
            self.max_in_flight = self.in_flight

    # -- WSGI ---------------------------------------------------------------
    def _wsgi(self, environ, start_response):
        request = Request(environ)
        method = request.method.upper()
        path = request.path
        qs = environ.get("QUERY_STRING", "")
        with self._lock:
            self.request_count += 1
            self.requests.append((method, path, qs))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency:
                # Outside every lock: requests sent in parallel wait in parallel, as over a network.
                time.sleep(self.latency)
                with self._lock:
                    self.delayed += 1
            return self._answer(request, method, path, qs, environ, start_response)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _answer(self, request: Request, method: str, path: str, qs: str, environ, start_response):
        fault = self.faults.take(method, path)
        if fault is not None:
            if fault.kind == "delay":
                time.sleep(fault.seconds)
            elif fault.kind == "drop":
                sock = environ.get("werkzeug.socket")
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                return []
            elif fault.kind == "fail":
                body = fault.body or {"code": str(fault.status), "details": None, "hint": None,
                                      "message": f"Injected fault: HTTP {fault.status}",
                                      "statusCode": str(fault.status), "error": "injected_fault"}
                resp = Response(fault.status, json.dumps(body).encode(),
                                {"Content-Type": "application/json; charset=utf-8"})
                return self._send(resp, start_response, method)
        resp = self._route(method, path, qs, request)
        return self._send(resp, start_response, method)

    def _send(self, resp: Response, start_response, method: str = "GET"):
        if method == "HEAD":  # never write a body on HEAD, errors included
            resp = Response(resp.status, b"", resp.headers)
        headers = dict(resp.headers)
        if self.latency:
            headers["X-Test-Latency-Ms"] = f"{self.latency * 1000:g}"  # the delay this answer waited
        if "Content-Type" not in headers and resp.body:
            headers["Content-Type"] = "application/json; charset=utf-8"
        headers.setdefault("Content-Length", str(len(resp.body)))
        reason = HTTP_STATUS_CODES.get(resp.status, "Unknown")
        start_response(f"{resp.status} {reason}", list(headers.items()))
        return [resp.body] if resp.body else []

    def _role(self, request: Request, storage: bool) -> str | Response:
        """The role the request's key carries, or the refusal. Without the platform's gateway (the
        servers charfix was checked against), both servers read `Authorization: Bearer`; `apikey` is
        used only when that header is absent, as the gateway does for the newer opaque keys."""
        auth = request.headers.get("Authorization")
        if auth is not None:
            scheme, _, rest = auth.partition(" ")
            token = rest.strip() if scheme.lower() == "bearer" else auth.strip()
        else:
            token = request.headers.get("apikey")
        if not token:
            if storage:  # Storage verifies an empty token and fails (supabase/storage src/http/plugins/jwt.ts)
                return storage_refusal("Invalid Compact JWS")
            return "anon"  # PostgREST serves a request without a token as its anon role
        if token == self.service_key:
            return "service_role"
        try:
            return role_of(token, self.jwt_secret)
        except BadToken as bad:
            if storage:
                return storage_refusal(bad.storage)
            return error_response(PgrstError(401, "PGRST301", bad.rest,
                                             headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}))

    def _route(self, method: str, path: str, qs: str, request: Request) -> Response:
        if path.startswith("/rest/v1"):
            role = self._role(request, storage=False)
            if isinstance(role, Response):
                return role
            rest = path[len("/rest/v1"):].strip("/")
            if rest == "":
                if method not in ("GET", "HEAD"):
                    return error_response(PgrstError(405, "PGRST117", f"Unsupported HTTP method: {method}"))
                try:
                    self._postgrest.check_profile("GET", request.headers)
                    with psycopg.connect(self.dsn) as conn:
                        doc = build_openapi(conn, self.schema, request.host)
                except PgrstError as e:
                    return error_response(e)
                except psycopg.Error as e:
                    return error_response(from_pg_error(e))
                body = json.dumps(doc).encode() if method == "GET" else b""
                return Response(200, body, {"Content-Type": "application/openapi+json; charset=utf-8"})
            if "/" in rest:
                return error_response(PgrstError(404, "PGRST125", "Invalid path specified in request URL"))
            return self._postgrest.handle(method, rest, qs, request.headers, request.get_data(), role=role)
        if path.startswith("/auth/v1/"):
            apikey = request.headers.get("apikey")
            if not self._auth_admin.gateway_accepts(apikey):
                return _gateway_error("Invalid API key" if apikey else "No API key found in request",
                                      "Double check your Supabase `anon` or `service_role` API key.")
            return self._auth_admin.handle(method, path[len("/auth/v1/"):], qs, request.headers)
        if path.startswith("/storage/v1/"):
            role = self._role(request, storage=True)
            if isinstance(role, Response):
                return role
            return self._storage.handle(method, path[len("/storage/v1/"):], request, role=role)
        return Response(404, json.dumps({"message": "no Route matched with those values"}).encode(),
                        {"Content-Type": "application/json; charset=utf-8"})
