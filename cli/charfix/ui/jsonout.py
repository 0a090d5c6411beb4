"""JSON for scripts: every field, a chosen few (`--json job_id,state`), or a jq filter (`--jq`).

The filter runs through the `jq` package (Python bindings to libjq, shipped as wheels on the package
index), imported only when --jq is given."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from charfix.errors import UsageError


@dataclass(frozen=True)
class JsonOutput:
    fields: tuple[str, ...]  # empty: every field
    jq: str | None = None

    @classmethod
    def parse(cls, fields: str, jq: str | None) -> JsonOutput:
        chosen = tuple(f.strip() for f in fields.split(",") if f.strip())
        if jq is not None:
            _compile(jq)  # a bad expression is refused before any work is done
        return cls(chosen, jq)

    def pick(self, item: Any) -> Any:
        if not self.fields or not isinstance(item, dict):
            return item
        unknown = [f for f in self.fields if f not in item]
        if unknown:
            raise UsageError(f"--json: no field {', '.join(unknown)}; the fields are {', '.join(item)}")
        return {f: item[f] for f in self.fields}

    def print_list(self, env, items: Iterable[Any]) -> None:
        """A list: streamed item by item when there is no jq filter to run over the whole of it."""
        picked = (self.pick(item) for item in items)
        if self.jq is None:
            env.print_json_lines(picked)
        else:
            _print_jq(env, self.jq, list(picked))

    def print_one(self, env, item: Any) -> None:
        if self.jq is None:
            env.print_json(self.pick(item))
        else:
            _print_jq(env, self.jq, self.pick(item))


def _print_jq(env, expression: str, data: Any) -> None:
    try:
        results = _compile(expression).input_value(json.loads(json.dumps(data, default=str))).all()
    except ValueError as exc:
        raise UsageError(f"--jq: {_first_line(exc)}") from None
    env.write_lines(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in results)


def _compile(expression: str):
    import jq

    try:
        return jq.compile(expression)
    except ValueError as exc:
        raise UsageError(f"--jq: '{expression}' is not a jq expression: {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
