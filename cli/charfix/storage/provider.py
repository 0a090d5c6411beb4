"""Fetching a portrait that only exists at the provider's URL (the upload to workspace-temp failed).

The URL comes from a row a user can write, so the fetch is built to stay outside the machine's own
network (docs/reliability.md, "The provider fetch"):

- the host is resolved once, every address it resolves to must be globally routable unicast
  (`refusal`), and the connection goes to that checked address itself; the Host header and the TLS
  server name (SNI and the certificate check) stay the URL's host name. A second DNS answer is never
  asked for, so it can never be used (DNS rebinding);
- a redirect is followed (at most MAX_REDIRECTS) only after its host is resolved and checked the
  same way; https never drops to http;
- one deadline covers connecting, redirects, headers and body, and the body is cut at MAX_BYTES
  while it streams;
- what is stored is what the bytes are (PNG, JPEG, WebP or MP4), whatever the URL or the
  Content-Type header say; anything else is refused.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from charfix.errors import BackendError

MAX_BYTES = 50 * 1024 * 1024
DEADLINE_SECONDS = 30.0
MAX_REDIRECTS = 3
CHUNK = 64 * 1024
REDIRECTS = (301, 302, 303, 307, 308)
GONE = (401, 403, 404, 410)  # how providers answer an expired or revoked signed URL
DEFAULT_PORTS = {"http": 80, "https": 443}
_PRINTABLE = "".join(chr(c) for c in range(0x21, 0x7F))

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Iterable[str]]  # (host, port) -> addresses, asked once per URL
Policy = Callable[[IPAddress], "str | None"]  # why an address is refused, or None when it may be used


@dataclass(frozen=True)
class FetchedImage:
    data: bytes
    content_type: str  # from the bytes, never from the server's header
    extension: str  # png, jpg, webp or mp4: the stored key's extension


# Every range that is not globally routable unicast, most specific first (the message names the
# first match). IANA's special-purpose registries (RFC 6890 and updates).
_REFUSED_V4 = [(ipaddress.ip_network(net), why) for net, why in [
    ("0.0.0.0/8", "'this network' (unspecified)"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared address space (CGNAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4 relay"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
]]
_REFUSED_V6 = [(ipaddress.ip_network(net), why) for net, why in [
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::ffff:0:0/96", "IPv4-mapped"),
    ("::/96", "IPv4-compatible"),
    ("64:ff9b::/96", "NAT64"),
    ("64:ff9b:1::/48", "local-use NAT64"),
    ("100::/64", "discard-only"),
    ("2001::/32", "Teredo"),
    ("2001:db8::/32", "documentation"),
    ("2001::/23", "IETF protocol assignments"),
    ("2002::/16", "6to4"),
    ("3fff::/20", "documentation"),
    ("fc00::/7", "unique local (ULA)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
]]
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
_TRANSITION = {"IPv4-mapped", "IPv4-compatible", "NAT64", "Teredo", "6to4"}  # forms that carry an IPv4 address


def refusal(ip: IPAddress) -> str | None:
    """Why charfix will not connect to `ip`, or None when it is globally routable unicast."""
    ranges = _REFUSED_V4 if ip.version == 4 else _REFUSED_V6
    for network, why in ranges:
        if ip in network:
            inner = _embedded_v4(ip) if why in _TRANSITION else None
            return f"{why} range" + (f" (it carries {inner})" if inner is not None else "")
    if ip.version == 6 and ip not in _GLOBAL_UNICAST_V6:
        return "outside global unicast"
    if not ip.is_global or ip.is_multicast or ip.is_reserved:
        return "not globally routable"
    return None


def _embedded_v4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 transition form carries: named in the refusal, refused anyway."""
    if ip.version == 4:
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _COMPATIBLE or ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
    return None


_COMPATIBLE = ipaddress.ip_network("::/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def resolve(host: str, port: int) -> list[str]:
    """The system resolver, asked once; its answers are checked and then used as they are."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


@dataclass(frozen=True)
class _Target:
    url: str
    scheme: str
    host: str  # ASCII (IDNA), lower case, no brackets: the TLS server name
    port: int
    path: str
    addresses: tuple[str, ...]  # every one checked

    @property
    def host_header(self) -> str:
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == DEFAULT_PORTS[self.scheme] else f"{name}:{self.port}"


@dataclass(frozen=True)
class Fetcher:
    """The guarded fetch. Each part is a plain dependency: the resolver, the address policy, the
    deadline, the size cap and the TLS trust (the system's CA store unless given)."""

    resolver: Resolver = resolve
    policy: Policy = refusal
    deadline_seconds: float = DEADLINE_SECONDS
    max_bytes: int = MAX_BYTES
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False)

    def __call__(self, url: str) -> FetchedImage:
        deadline = time.monotonic() + self.deadline_seconds
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            target = self._target(current)
            location, body, header_type = self._exchange(target, deadline)
            if location is None:
                return _sniffed(url, body, header_type)
            try:  # the server writes the Location: one that cannot be parsed fails this job, not the run
                following = urllib.parse.urljoin(current, location)
                scheme = urllib.parse.urlsplit(following).scheme.lower()
            except ValueError as exc:
                raise BackendError(f"refusing to fetch {url}: it redirects to an address that is not a URL ({exc})") from exc
            if target.scheme == "https" and scheme == "http":
                raise BackendError(f"refusing to fetch {url}: it redirects from https to plain http ({following})")
            current = following
        raise BackendError(f"refusing to fetch {url}: more than {MAX_REDIRECTS} redirects")

    def _target(self, url: str) -> _Target:
        try:
            parsed = urllib.parse.urlsplit(url)
            port = parsed.port
        except ValueError as exc:
            raise BackendError(f"refusing to fetch {url!r}: {exc}") from exc
        scheme = parsed.scheme.lower()
        if scheme not in DEFAULT_PORTS or not parsed.hostname:
            raise BackendError(f"refusing to fetch {url!r}: not an http(s) URL")
        try:
            host = parsed.hostname.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise BackendError(f"refusing to fetch {url!r}: {parsed.hostname!r} is not a valid host name") from exc
        port = port or DEFAULT_PORTS[scheme]
        # Non-ASCII, spaces and control characters are sent percent-encoded; escapes already there stay.
        path = urllib.parse.quote(urllib.parse.urlunsplit(("", "", parsed.path or "/", parsed.query, "")), safe=_PRINTABLE)
        return _Target(url, scheme, host, port, path, self._checked_addresses(url, host, port))

    def _checked_addresses(self, url: str, host: str, port: int) -> tuple[str, ...]:
        literal = _ip(host)
        if literal is not None:
            answers = [host]
        else:
            try:
                answers = list(self.resolver(host, port))
            except OSError as exc:
                raise BackendError(f"cannot fetch {url}: {host} does not resolve ({exc})") from exc
        if not answers:
            raise BackendError(f"cannot fetch {url}: {host} does not resolve")
        for answer in answers:
            ip = _ip(answer)
            why = "not an IP address" if ip is None else self.policy(ip)
            if why is not None:
                # One bad answer refuses the host: a resolver that mixes a public and a private answer
                # is steering, and no address of it is used.
                raise BackendError(f"refusing to fetch {url}: {host} points at a private address ({answer}, {why})")
        return tuple(dict.fromkeys(answers))

    def _exchange(self, target: _Target, deadline: float) -> tuple[str | None, bytes, str]:
        """One request to the checked address: (redirect location, body, header content type)."""
        cut = threading.Event()
        holder: list[socket.socket] = []

        def cut_off() -> None:
            cut.set()
            for sock in holder:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        watchdog = threading.Timer(max(deadline - time.monotonic(), 0), cut_off)
        watchdog.daemon = True
        watchdog.start()
        try:
            result = self._talk(target, deadline, holder)
        except (OSError, http.client.HTTPException) as exc:
            if cut.is_set() or time.monotonic() >= deadline:
                raise self._late(target) from exc
            raise BackendError(f"cannot fetch {target.url}: {exc}") from exc
        finally:
            watchdog.cancel()
            for sock in holder:
                sock.close()
        if cut.is_set():
            # The cut-off can end a body early that then reads as complete (no Content-Length).
            raise self._late(target)
        return result

    def _late(self, target: _Target) -> BackendError:
        return BackendError(f"{target.url} did not answer in full within {self.deadline_seconds:g} s; nothing was stored")

    def _talk(self, target: _Target, deadline: float, holder: list[socket.socket]) -> tuple[str | None, bytes, str]:
        sock = self._connect(target, deadline, holder)
        conn = http.client.HTTPConnection(target.host, target.port)
        conn.sock = sock  # already connected to the checked address: http.client never resolves
        conn.request("GET", target.path, headers={
            "Host": target.host_header, "User-Agent": "charfix", "Accept": "image/*, video/mp4",
            "Accept-Encoding": "identity", "Connection": "close",
        })
        response = conn.getresponse()
        if response.status in REDIRECTS and response.getheader("Location"):
            return response.getheader("Location"), b"", ""
        if response.status in GONE:
            raise BackendError(
                f"{target.url} answered HTTP {response.status}: the provider's copy has expired; the portrait is lost")
        if response.status != 200:
            raise BackendError(f"{target.url} answered HTTP {response.status}; nothing was stored (a later run may try again)")
        length = response.getheader("Content-Length")
        if length is not None and length.strip().isdigit() and int(length) > self.max_bytes:
            raise self._too_big(target)
        chunks, total = [], 0
        while chunk := response.read1(CHUNK):
            total += len(chunk)
            if total > self.max_bytes:
                raise self._too_big(target)
            chunks.append(chunk)
            if time.monotonic() >= deadline:
                raise self._late(target)
        return None, b"".join(chunks), response.headers.get_content_type()

    def _connect(self, target: _Target, deadline: float, holder: list[socket.socket]) -> socket.socket:
        """A socket to the first checked address that answers, TLS-wrapped for https with the URL's
        host name as server name and certificate name."""
        error: OSError | None = None
        for address in target.addresses:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                sock = socket.create_connection((address, target.port), timeout=remaining)
            except OSError as exc:
                error = exc
                continue
            holder.append(sock)
            if target.scheme == "https":
                context = self.ssl_context or ssl.create_default_context()
                sock = context.wrap_socket(sock, server_hostname=target.host)
                holder.append(sock)
            return sock
        raise error or TimeoutError("no time left to connect")

    def _too_big(self, target: _Target) -> BackendError:
        return BackendError(f"{target.url} is larger than {self.max_bytes // (1024 * 1024)} MB; refusing it")


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


# ISO base media files whose major brand is an MP4 one (not QuickTime, HEIF or 3GP).
MP4_BRANDS = frozenset({b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"dash", b"M4V "})


def sniff(data: bytes) -> tuple[str, str] | None:
    """(content type, extension) from the file's own signature, or None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png", "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg", "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", "webp"
    if data[4:8] == b"ftyp" and data[8:12] in MP4_BRANDS:
        return "video/mp4", "mp4"
    return None


EXTENSIONS = ("png", "jpg", "webp", "mp4")


def _sniffed(url: str, data: bytes, header_type: str) -> FetchedImage:
    found = sniff(data)
    if found is None:
        raise BackendError(
            f"{url} did not answer with a PNG, JPEG, WebP or MP4 file (its header said {header_type}); nothing was stored")
    return FetchedImage(data=data, content_type=found[0], extension=found[1])


def fetch_image(url: str) -> FetchedImage:
    """The provider's file at `url`, fetched with the default guard (system resolver, public addresses only)."""
    return Fetcher()(url)
