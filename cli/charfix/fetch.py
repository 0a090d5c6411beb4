"""Fetching a portrait that only exists at the provider's URL (the upload to workspace-temp failed)."""

from __future__ import annotations

import urllib.error
import urllib.request

from charfix.errors import BackendError

MAX_BYTES = 50 * 1024 * 1024
TIMEOUT_SECONDS = 20


def fetch_image(url: str) -> tuple[bytes, str]:
    if not url.lower().startswith(("https://", "http://")):
        raise BackendError(f"refusing to fetch {url!r}: not an http(s) URL")
    request = urllib.request.Request(url, headers={"User-Agent": "charfix"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
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
