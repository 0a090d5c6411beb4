"""What every command receives: the terminal, the settings, and the backends built on first use."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from charfix.ui.environment import Environment

if TYPE_CHECKING:  # not at start-up: scan imports the models (pydantic); config, psycopg's conninfo
    from charfix.config import Settings
    from charfix.backends import Backends


@dataclass
class Runtime:
    env: Environment
    flags: dict[str, Any] = field(default_factory=dict)
    config_path: Path | None = None
    demo: bool = False
    debug: bool = False
    argv: list[str] = field(default_factory=list)  # as given (after app.normalize): the audit's command line
    _settings: Settings | None = None
    _backends: Backends | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from charfix.config import load_settings

            self._settings = load_settings(flags=self.flags, config_path=self.config_path, demo=self.demo)
            self.env.secrets.extend(self._settings.secrets())
            for warning in self._settings.warnings:
                self.env.warn(warning)
        return self._settings

    def backends(self) -> Backends:
        if self._backends is None:
            from charfix.backends.bootstrap import build_backends

            self._backends = build_backends(self.settings)
        return self._backends

    def open_worker(self) -> Backends:
        """Another set of backends with its own connection, for parallel repairs."""
        from charfix.backends.bootstrap import build_backends

        return build_backends(self.settings, check=False)  # backends() checked access already

    def now(self) -> datetime:
        return datetime.now(UTC)

    def close(self) -> None:
        if self._backends is not None:
            self._backends.close()
            self._backends = None
