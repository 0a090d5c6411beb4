"""What interactive `repair` remembers between runs: the jobs a person already decided, per target,
so that the next run resumes after them (docs/commands.md, "repair")."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, UTC
from pathlib import Path


def default_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_state_dir("charfix")) / "repair-decided.json"


class Decisions:
    """`{target key: {job id: {"state": ..., "decision": ..., "at": ...}}}` in one small JSON file.
    A job counts as decided while its state is the one it had when decided: if it changed since,
    it is offered again."""

    def __init__(self, path: Path, target: str):
        self.path = path
        # The target's description (never a password) hashed: the file says nothing about where.
        self.key = hashlib.sha256(target.encode()).hexdigest()[:16]
        self.all = self._read()
        self.mine: dict = self.all.setdefault(self.key, {})

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # missing or damaged: start afresh; it only saves the person some skips
        return data if isinstance(data, dict) else {}

    def decided(self, job_id, state: str) -> bool:
        entry = self.mine.get(str(job_id))
        return isinstance(entry, dict) and entry.get("state") == state

    def record(self, job_id, state: str, decision: str) -> None:
        self.mine[str(job_id)] = {"state": state, "decision": decision,
                                  "at": datetime.now(UTC).isoformat(timespec="seconds")}
        self._write()

    def forget(self) -> None:
        self.mine.clear()
        self._write()

    def _write(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(json.dumps(self.all, indent=1), encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError:
            pass  # resuming is a convenience: a read-only home must not stop a repair
