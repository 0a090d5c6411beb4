"""Fetching a provider URL from a row: never toward the machine's own network."""

from __future__ import annotations

import pytest

from charfix.errors import BackendError
from charfix.fetch import fetch_image


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/x.png",
    "http://localhost/x.png",
    "http://169.254.169.254/latest/meta-data",
    "http://10.0.0.5/x.png",
    "http://[::1]/x.png",
])
def test_private_addresses_are_refused_before_any_request(url):
    with pytest.raises(BackendError, match="private address"):
        fetch_image(url)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x", "javascript:alert(1)", ""])
def test_only_http_urls_are_fetched(url):
    with pytest.raises(BackendError, match="not an http"):
        fetch_image(url)
