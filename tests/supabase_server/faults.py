"""Fault injection for the Supabase test server.

Each rule matches requests whose path contains ``path_contains`` (``None``
matches every request) and is consumed by the first ``n`` matching requests.
Rules are checked in the order they were added; the first matching rule wins.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass
class FaultRule:
    kind: str  # "fail" | "delay" | "drop"
    remaining: int
    path_contains: str | None = None
    method: str | None = None
    status: int = 503
    seconds: float = 0.0
    body: dict | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.remaining <= 0:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path_contains is None or self.path_contains in path


class Faults:
    """Thread-safe registry of pending faults."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self.triggered: list[tuple[str, str, str]] = []  # (kind, method, path)

    def fail_next(
        self,
        n: int = 1,
        status: int = 503,
        path_contains: str | None = None,
        *,
        method: str | None = None,
        body: dict | None = None,
    ) -> None:
        """Answer the next ``n`` matching requests with ``status`` (JSON body)."""
        self._add(FaultRule("fail", n, path_contains, method, status=status, body=body))

    def delay_next(
        self,
        seconds: float,
        path_contains: str | None = None,
        *,
        n: int = 1,
        method: str | None = None,
    ) -> None:
        """Sleep ``seconds`` before handling the next ``n`` matching requests."""
        self._add(FaultRule("delay", n, path_contains, method, seconds=seconds))

    def drop_next(
        self,
        path_contains: str | None = None,
        *,
        n: int = 1,
        method: str | None = None,
    ) -> None:
        """Close the connection of the next ``n`` matching requests, no response."""
        self._add(FaultRule("drop", n, path_contains, method))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self.triggered.clear()

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(r.remaining for r in self._rules)

    def _add(self, rule: FaultRule) -> None:
        if rule.remaining < 1:
            raise ValueError("n must be >= 1")
        with self._lock:
            self._rules.append(rule)

    def take(self, method: str, path: str) -> FaultRule | None:
        """Consume and return the first rule matching this request, if any."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path):
                    rule.remaining -= 1
                    self.triggered.append((rule.kind, method, path))
                    if rule.remaining <= 0:
                        self._rules.remove(rule)
                    return rule
        return None
