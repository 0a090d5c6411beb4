"""Fetching a portrait that only exists at the provider's URL (the upload to workspace-temp failed)."""

from __future__ import annotations

import ipaddress
import socket
import urllib.error
import urllib.parse
import urllib.request

from charfix.errors import BackendError

MAX_BYTES = 50 * 1024 * 1024
TIMEOUT_SECONDS = 20


class _PublicOnly(urllib.request.HTTPRedirectHandler):
    """Redirects are followed only to public addresses, like the first request."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        _check_public(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _check_public(url: str) -> None:
    """The URL comes from a database row: never let it reach the machine's own network."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("https", "http") or not parsed.hostname:
        raise BackendError(f"refusing to fetch {url!r}: not an http(s) URL")
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parsed.hostname, parsed.port or 443)}
    except OSError as exc:
        raise BackendError(f"cannot fetch {url}: {exc}") from exc
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not ip.is_global:
            raise BackendError(f"refusing to fetch {url}: it points at a private address ({ip})")


def fetch_image(url: str) -> tuple[bytes, str]:
    _check_public(url)
    request = urllib.request.Request(url, headers={"User-Agent": "charfix"})
    opener = urllib.request.build_opener(_PublicOnly)
    try:
        with opener.open(request, timeout=TIMEOUT_SECONDS) as response:
            content_type = response.headers.get_content_type()
            if not content_type.startswith(("image/", "video/")):
                raise BackendError(f"{url} answered with {content_type}, not an image: the portrait is lost")
            data = response.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise BackendError(f"{url} answered HTTP {exc.code}: the provider's copy has expired; the portrait is lost") from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BackendError(f"cannot fetch {url}: {reason}") from exc
    if len(data) > MAX_BYTES:
        raise BackendError(f"{url} is larger than {MAX_BYTES // (1024 * 1024)} MB; refusing it")
    return data, content_type
