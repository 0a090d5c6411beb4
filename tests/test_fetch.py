"""The guarded provider fetch (docs/reliability.md, "The provider fetch"), against real HTTP(S) servers on
loopback addresses. The resolver and the address policy are the fetcher's own dependencies: a test maps
`images.example` to a loopback address and allows exactly that address, so it can show where the
connection went. The default policy, which allows no loopback address, is tested on its own."""

from __future__ import annotations

import ipaddress
import shutil
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest
from psycopg.types.json import Jsonb

from charfix.diagnosis import Rules
from charfix.errors import BackendError
from charfix.storage.provider import Fetcher, fetch_image, refusal, sniff
from charfix.http import connect
from charfix.models import State
from charfix.repair.job import Outcome
from charfix.repository.postgres import PostgresRepository
from charfix.repository.supabase import SupabaseRepository
from charfix.backends import Backends
from charfix.queries.scan import diagnose_ids
from charfix.repair.operations import complete_job
from charfix.storage.local import LocalStorage
from charfix.storage.supabase import SupabaseStorage
from snapshots import snapshot
from tests.supabase_server import SupabaseTestServer, make_service_key

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(17) + b"\x00\x00\x00\x00IEND\xaeB`\x82"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(32) + b"\xff\xd9"
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(24)
MP4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(16)
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'
HOST = "images.example"


# ---------------------------------------------------------------------------------------------
# A real server on a loopback address
# ---------------------------------------------------------------------------------------------

Route = Callable[[BaseHTTPRequestHandler], None]


class Site:
    """An HTTP (or HTTPS) server on `address`; each path answers as its route says. Every request
    that reached it is recorded as (path, Host header); with TLS, every server name a client sent."""

    def __init__(self, address: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None):
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.server_names: list[str | None] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 (the http.server name)
                site.requests.append((self.path, self.headers.get("Host")))
                route = site.routes.get(self.path.split("?")[0])
                if route is None:
                    self.send_error(404)
                    return
                try:
                    route(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client hung up: what a deadline or a size cap does

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((address, port), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            tls.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def answer(data: bytes, content_type: str = "image/png", *, length: bool = True) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        if length:
            handler.send_header("Content-Length", str(len(data)))
        else:
            handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(data)
        handler.close_connection = True
    return route


def redirect(location: str, code: int = 302) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(code)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    return route


def drip_body(handler: BaseHTTPRequestHandler) -> None:
    """A PNG that never ends: one byte every 0.2 s (the report saw one every 10 s, for 80 s)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "image/png")
    handler.send_header("Content-Length", "1000000")
    handler.end_headers()
    handler.wfile.write(PNG[:8])
    for _ in range(300):
        handler.wfile.write(b"\x00")
        handler.wfile.flush()
        time.sleep(0.2)


def drip_headers(handler: BaseHTTPRequestHandler) -> None:
    handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
    for n in range(300):
        handler.wfile.write(f"X-Slow-{n}: a\r\n".encode())
        handler.wfile.flush()
        time.sleep(0.2)


class Resolver:
    """Answers each name from a script: the n-th question gets the n-th answer (the last repeats)."""

    def __init__(self, *answers: list[str]):
        self.answers = list(answers)
        self.asked: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        return self.answers[min(len(self.asked), len(self.answers)) - 1]


def only(*addresses: str):
    """A policy that allows exactly these (loopback) addresses and judges every other one as the
    default policy does: the test's stand-in for 'a public address'."""
    allowed = {ipaddress.ip_address(a) for a in addresses}
    return lambda ip: None if ip in allowed else (refusal(ip) or "not the test's public address")


@pytest.fixture
def site():
    server = Site()
    yield server
    server.close()


def fetcher(*answers: list[str], allow: tuple[str, ...] = ("127.0.0.1",), **options) -> Fetcher:
    return Fetcher(resolver=Resolver(*answers), policy=only(*allow), **options)


# ---------------------------------------------------------------------------------------------
# Where the fetch may go
# ---------------------------------------------------------------------------------------------

REFUSED_LITERALS = [
    "127.0.0.1", "127.1.2.3", "10.0.0.5", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "224.0.0.1", "255.255.255.255", "240.0.0.1", "198.18.0.1", "192.0.2.1", "198.51.100.7",
    "203.0.113.9", "192.0.0.8",
    "[::1]", "[::]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::ffff:8.8.8.8]", "[::127.0.0.1]", "[::8.8.8.8]",
    "[64:ff9b::127.0.0.1]", "[64:ff9b::8.8.8.8]", "[64:ff9b:1::a00:1]", "[2002:7f00:1::1]", "[2002:808:808::1]",
    "[2001:0:4136:e378:8000:63bf:3fff:fdd2]", "[2001:db8::1]", "[3fff::1]", "[fec0::1]", "[fd12:3456::1]",
    "[fc00::1]", "[fe80::1]", "[ff02::1]", "[100::1]",
]


@pytest.mark.parametrize("host", REFUSED_LITERALS)
def test_every_address_that_is_not_global_unicast_is_refused(host):
    resolver = Resolver(["8.8.8.8"])
    with pytest.raises(BackendError, match="private address"):
        Fetcher(resolver=resolver)(f"http://{host}/x.png")
    assert resolver.asked == []  # a literal is its own answer


@pytest.mark.parametrize("host", ["2130706433", "0x7f000001", "127.1", "localhost"])
def test_other_spellings_of_loopback_are_refused_through_the_system_resolver(host):
    with pytest.raises(BackendError, match="private address"):
        fetch_image(f"http://{host}/x.png")


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e"])
def test_public_unicast_addresses_are_allowed(address):
    assert refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("answers", [["8.8.8.8", "127.0.0.1"], ["::ffff:10.0.0.1"], ["2002:a00:1::1"], ["fec0::1"],
                                     ["not-an-address"], []])
def test_a_name_is_refused_when_any_of_its_addresses_is(site, answers):
    site.routes["/x.png"] = answer(PNG)
    with pytest.raises(BackendError, match="private address|does not resolve"):
        fetcher(answers, allow=("8.8.8.8",))(f"http://{HOST}:{site.port}/x.png")
    assert site.requests == []


def test_the_default_policy_refuses_a_name_that_resolves_to_loopback(site):
    site.routes["/x.png"] = answer(PNG)
    with pytest.raises(BackendError, match=r"images\.example points at a private address \(127\.0\.0\.1, loopback"):
        Fetcher(resolver=Resolver(["127.0.0.1"]))(f"http://{HOST}:{site.port}/x.png")
    assert site.requests == []


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x", "javascript:alert(1)", "", "http:///x",
                                 "http://images.example:99999/x"])
def test_only_http_urls_are_fetched(url):
    with pytest.raises(BackendError, match="not an http|refusing"):
        fetcher(["127.0.0.1"])(url)


def test_the_connection_goes_to_the_checked_address_and_keeps_the_host_name(site):
    site.routes["/files/a.png"] = answer(PNG)
    fetch = fetcher(["127.0.0.1"])
    got = fetch(f"http://{HOST}:{site.port}/files/a.png?sig=1")
    assert (got.data, got.content_type, got.extension) == (PNG, "image/png", "png")
    assert site.requests == [("/files/a.png?sig=1", f"{HOST}:{site.port}")]
    assert fetch.resolver.asked == [(HOST, site.port)]


def test_an_odd_path_is_sent_percent_encoded(site):
    site.routes["/files/h%C3%A9ron%20x.png"] = answer(PNG)
    assert fetcher(["127.0.0.1"])(f"http://{HOST}:{site.port}/files/h\u00e9ron x.png").data == PNG
    assert site.requests == [("/files/h%C3%A9ron%20x.png", f"{HOST}:{site.port}")]


def test_a_second_dns_answer_is_never_asked_for_nor_used(site):
    """DNS rebinding: the name answers a public address, then an inside one. Only the first is used."""
    inside = Site("127.0.0.2", port=site.port)
    try:
        site.routes["/a.png"] = answer(PNG)
        inside.routes["/a.png"] = answer(b"\x89PNG\r\n\x1a\n secrets from inside")
        fetch = fetcher(["127.0.0.1"], ["127.0.0.2"])
        assert fetch(f"http://{HOST}:{site.port}/a.png").data == PNG
        assert fetch.resolver.asked == [(HOST, site.port)]
        assert inside.requests == [] and len(site.requests) == 1
    finally:
        inside.close()


def test_a_redirect_is_resolved_and_checked_again(site):
    inside = Site("127.0.0.2", port=site.port)
    try:
        site.routes["/r"] = redirect(f"http://{HOST}:{site.port}/a.png")
        inside.routes["/a.png"] = answer(PNG)
        fetch = fetcher(["127.0.0.1"], ["127.0.0.2"])
        with pytest.raises(BackendError, match=r"private address \(127\.0\.0\.2"):
            fetch(f"http://{HOST}:{site.port}/r")
        assert fetch.resolver.asked == [(HOST, site.port)] * 2 and inside.requests == []
    finally:
        inside.close()


@pytest.mark.parametrize("location", ["http://[::ffff:127.0.0.1]/a.png", "http://169.254.169.254/latest/meta-data",
                                      "http://10.0.0.1/a.png", "http://[64:ff9b::a9fe:a9fe]/", "file:///etc/passwd"])
def test_a_redirect_to_a_private_or_odd_address_is_refused(site, location):
    site.routes["/r"] = redirect(location, 301)
    with pytest.raises(BackendError, match="private address|not an http"):
        fetcher(["127.0.0.1"])(f"http://{HOST}:{site.port}/r")
    assert len(site.requests) == 1


@pytest.mark.parametrize("location", ["http://[oops/a.png", "https://a]b/", "http://images.example:99999/a.png"])
def test_a_malformed_redirect_is_refused_for_this_job_alone(site, location):
    """The provider's server writes the Location: one it cannot parse is the job's failure (BackendError),
    never an error that stops the run (exit 70)."""
    site.routes["/r"] = redirect(location, 302)
    with pytest.raises(BackendError):
        fetcher(["127.0.0.1"])(f"http://{HOST}:{site.port}/r")
    assert len(site.requests) == 1


def test_redirects_on_the_same_checked_host_are_followed_a_few_times(site):
    site.routes["/1"] = redirect("/2", 301)
    site.routes["/2"] = redirect(f"http://{HOST}:{site.port}/a.png", 307)
    site.routes["/a.png"] = answer(PNG)
    fetch = fetcher(["127.0.0.1"])
    assert fetch(f"http://{HOST}:{site.port}/1").data == PNG
    assert [path for path, _ in site.requests] == ["/1", "/2", "/a.png"]
    assert len(fetch.resolver.asked) == 3  # each hop resolved and checked again


def test_a_redirect_loop_is_cut_short(site):
    site.routes["/loop"] = redirect("/loop")
    with pytest.raises(BackendError, match="more than 3 redirects"):
        fetcher(["127.0.0.1"])(f"http://{HOST}:{site.port}/loop")
    assert len(site.requests) == 4


def test_an_expired_url_says_so(site):
    with pytest.raises(BackendError, match="answered HTTP 404: the provider's copy has expired"):
        fetcher(["127.0.0.1"])(f"http://{HOST}:{site.port}/gone.png")


def test_a_server_error_is_not_called_an_expired_copy(site):
    site.routes["/busy.png"] = lambda handler: handler.send_error(503)
    with pytest.raises(BackendError, match=r"answered HTTP 503; nothing was stored \(a later run may try again\)"):
        fetcher(["127.0.0.1"])(f"http://{HOST}:{site.port}/busy.png")


# ---------------------------------------------------------------------------------------------
# TLS: the certificate and the server name are the URL's host, whatever address was dialled
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    made = {}
    for name in (HOST, "other.example"):
        cert, key = folder / f"{name}.pem", folder / f"{name}.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", str(key),
                        "-out", str(cert), "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}"],
                       check=True, capture_output=True)
        made[name] = (cert, key)
    return made


def tls_site(certificates, name: str) -> Site:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificates[name])
    return Site(tls=context)


def trusting(certificates) -> ssl.SSLContext:
    context = ssl.create_default_context()
    for cert, _ in certificates.values():
        context.load_verify_locations(cafile=str(cert))
    return context


def test_https_goes_to_the_checked_address_with_the_host_as_server_name(certificates):
    secure = tls_site(certificates, HOST)
    try:
        secure.routes["/a.png"] = answer(PNG, "text/html")
        got = fetcher(["127.0.0.1"], ssl_context=trusting(certificates))(f"https://{HOST}:{secure.port}/a.png")
        assert (got.data, got.extension) == (PNG, "png")
        assert secure.server_names == [HOST]
        assert secure.requests == [("/a.png", f"{HOST}:{secure.port}")]
    finally:
        secure.close()


def test_https_refuses_a_certificate_for_another_name(certificates):
    secure = tls_site(certificates, "other.example")
    try:
        secure.routes["/a.png"] = answer(PNG)
        with pytest.raises(BackendError, match="certificate"):
            fetcher(["127.0.0.1"], ssl_context=trusting(certificates))(f"https://{HOST}:{secure.port}/a.png")
        assert secure.requests == []
    finally:
        secure.close()


def test_https_never_follows_a_redirect_to_plain_http(certificates, site):
    secure = tls_site(certificates, HOST)
    try:
        site.routes["/a.png"] = answer(PNG)
        secure.routes["/r"] = redirect(f"http://{HOST}:{site.port}/a.png")
        with pytest.raises(BackendError, match="from https to plain http"):
            fetcher(["127.0.0.1"], ssl_context=trusting(certificates))(f"https://{HOST}:{secure.port}/r")
        assert site.requests == []
    finally:
        secure.close()


# ---------------------------------------------------------------------------------------------
# Time and size
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", [drip_body, drip_headers], ids=["body", "headers"])
def test_a_slow_drip_hits_the_overall_deadline(site, route):
    site.routes["/slow.png"] = route
    with pytest.raises(BackendError, match="did not answer in full within 1 s; nothing was stored"):
        fetcher(["127.0.0.1"], deadline_seconds=1)(f"http://{HOST}:{site.port}/slow.png")


@pytest.mark.parametrize("length", [True, False], ids=["announced", "streamed"])
def test_a_body_over_the_size_cap_is_refused(site, length):
    site.routes["/big.png"] = answer(PNG + bytes(5000), length=length)
    with pytest.raises(BackendError, match="larger than"):
        fetcher(["127.0.0.1"], max_bytes=4096)(f"http://{HOST}:{site.port}/big.png")


# ---------------------------------------------------------------------------------------------
# What is stored is what the bytes are
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "header"), [
    (SVG, "image/png"), (b"<html><script>alert(1)</script></html>", "image/png"), (b"GIF89a" + bytes(20), "image/gif"),
    (b"\x00\x00\x00\x18ftypqt  " + bytes(16), "video/mp4"), (b"\x00\x00\x00\x18ftypheic" + bytes(16), "image/heic"),
    (b"", "image/png"),
], ids=["svg", "html", "gif", "quicktime", "heic", "empty"])
def test_anything_but_png_jpeg_webp_or_mp4_is_refused_whatever_the_header(site, body, header):
    site.routes["/x.png"] = answer(body, header)
    with pytest.raises(BackendError, match="did not answer with a PNG, JPEG, WebP or MP4 file"):
        fetcher(["127.0.0.1"])(f"http://{HOST}:{site.port}/x.png")


@pytest.mark.parametrize(("body", "content_type", "extension"), [
    (PNG, "image/png", "png"), (JPEG, "image/jpeg", "jpg"), (WEBP, "image/webp", "webp"), (MP4, "video/mp4", "mp4"),
])
def test_the_type_and_extension_come_from_the_bytes_not_the_header_or_url(site, body, content_type, extension):
    site.routes["/page.html"] = answer(body, "text/html")
    got = fetcher(["127.0.0.1"])(f"http://{HOST}:{site.port}/page.html")
    assert (got.content_type, got.extension, got.data) == (content_type, extension, body)
    assert sniff(body) == (content_type, extension)


# ---------------------------------------------------------------------------------------------
# End to end: a job whose output only exists at the provider's URL is saved by `complete_job`
# ---------------------------------------------------------------------------------------------


def plant(db_url: str, *, url: str, in_metadata: bool) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """What the application leaves when its upload to workspace-temp fails: older code kept the URL in
    temp_storage_path (and the job stayed processing); newer code stores '' and records the URL in
    metadata.original_fal_url. The character shows the provider's URL (the creation flow)."""
    user, job, character = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    created = datetime.now(UTC) - timedelta(days=1)
    metadata = {"destination": "character_portrait", "character_id": str(character), "prompt": "a heron"}
    if in_metadata:
        metadata |= {"original_fal_url": url, "fal_response": {"images": [{"url": url}]}}
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("insert into characters (id, user_id, name, description, image_url, reference_image_url, created_at) "
                     "values (%s, %s, 'Heron', 'd', %s, %s, %s)", (character, user, url, url, created - timedelta(days=2)))
        conn.execute("insert into jobs (id, user_id, job_type, status, metadata, created_at) values (%s, %s, 'image', %s, %s, %s)",
                     (job, user, "completed" if in_metadata else "processing", Jsonb(metadata), created))
        conn.execute("insert into workspace_assets (user_id, job_id, asset_type, temp_storage_path, file_size_bytes, mime_type, "
                     "generation_seed, original_prompt, model_used, created_at) values "
                     "(%s, %s, 'image', %s, 0, 'image/png', 7, 'a heron', 'fal-ai/flux', %s)",
                     (user, job, "" if in_metadata else url, created + timedelta(seconds=9)))
    return user, job, character


@pytest.fixture
def storage_root(tmp_path):
    root = tmp_path / "storage"
    for bucket in ("workspace-temp", "user-library"):
        (root / bucket).mkdir(parents=True)
    return root


@pytest.fixture(params=["postgres", "supabase"])
def backend(request, db_url, storage_root):
    """Either backend over the same database and folder; `backend(fetch)` builds the Backends."""
    if request.param == "postgres":
        repo = PostgresRepository.connect(db_url)
        yield lambda fetch: Backends(repository=repo, storage=LocalStorage(storage_root), fetcher=fetch)
        repo.close()
        return
    key = make_service_key()
    server = SupabaseTestServer(dsn=db_url, storage_root=storage_root, service_key=key)
    server.start()
    client = connect(server.url, key, timeout=5)
    yield lambda fetch: Backends(repository=SupabaseRepository(client), storage=SupabaseStorage(client), fetcher=fetch)
    server.stop()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("in_metadata", [False, True], ids=["temp-storage-path", "original-fal-url"])
def test_a_job_only_at_the_provider_url_is_fetched_stored_and_shown(db_url, storage_root, backend, site, in_metadata):
    site.routes["/files/heron.html"] = answer(JPEG, "text/html")
    url = f"http://{HOST}:{site.port}/files/heron.html?sig=1"
    user, job, character = plant(db_url, url=url, in_metadata=in_metadata)
    backends = backend(fetcher(["127.0.0.1"]))
    rules = Rules(now=datetime.now(UTC))
    assert diagnose_ids(backends, [job], rules)[0].state == State.NEEDS_REVIEW
    result = complete_job(backends, job, rules=rules)
    assert result.outcome == Outcome.REPAIRED, result.message
    key = f"{user}/{job}_{character}.jpg"
    assert (storage_root / "user-library" / key).read_bytes() == JPEG
    assert sorted(p.name for p in (storage_root / "user-library" / str(user)).iterdir()) == [f"{job}_{character}.jpg"]
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("select storage_path, mime_type, asset_type, file_size_bytes, character_id "
                            "from user_library where user_id = %s", (user,)).fetchall()
        image = conn.execute("select image_url, reference_image_url from characters where id = %s", (character,)).fetchone()
        status, = conn.execute("select status from jobs where id = %s", (job,)).fetchone()
    assert rows == [(key, "image/jpeg", "image", len(JPEG), character)]
    assert image == (f"user-library/{key}", f"user-library/{key}") and status == "completed"
    assert diagnose_ids(backends, [job], rules)[0].state == State.SAVED
    again = complete_job(backends, job, rules=rules)
    assert again.outcome == Outcome.ALREADY_FINE and len(site.requests) == 1


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_refused_fetch_writes_nothing(db_url, storage_root, backend, site):
    site.routes["/files/heron.png"] = answer(PNG)
    _, job, _ = plant(db_url, url=f"http://{HOST}:{site.port}/files/heron.png", in_metadata=True)
    backends = backend(Fetcher(resolver=Resolver(["127.0.0.1"])))  # the default policy: loopback is inside
    before = snapshot(db_url, storage_root)
    result = complete_job(backends, job, rules=Rules(now=datetime.now(UTC)))
    assert result.outcome == Outcome.FAILED and "private address" in result.message
    assert snapshot(db_url, storage_root) == before and site.requests == []
