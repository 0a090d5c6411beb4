"""Settings from flags, then the environment, then the config file (`~/.config/charfix/config.toml`).

Each setting remembers where it came from, so errors and `doctor` can say so.
"""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from charfix.errors import ConfigError

# setting -> (environment variable, config file key)
SOURCES: dict[str, tuple[str, str]] = {
    "db_url": ("SUPABASE_DB_URL", "db_url"),
    "supabase_url": ("SUPABASE_URL", "supabase_url"),
    "service_role_key": ("SUPABASE_SERVICE_ROLE_KEY", "service_role_key"),
    "storage_dir": ("CHARFIX_STORAGE_DIR", "storage_dir"),
    "audit_log": ("CHARFIX_AUDIT_LOG", "audit_log"),
    "operator": ("CHARFIX_OPERATOR", "operator"),
    "label": ("CHARFIX_LABEL", "label"),  # "production": shown in colour on every write prompt
}
KNOWN_KEYS = {key for _, key in SOURCES.values()}


@dataclass(frozen=True)
class Settings:
    db_url: str | None = None
    supabase_url: str | None = None
    service_role_key: str | None = field(default=None, repr=False)
    storage_dir: Path | None = None
    audit_log: Path | None = None
    operator: str | None = None
    label: str | None = None
    demo: bool = False
    config_path: Path | None = None
    origins: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def secrets(self) -> list[str]:
        """Values that must never be printed: the key, and the password inside the database URL."""
        found = [self.service_role_key] if self.service_role_key else []
        if self.db_url:
            found += _passwords(self.db_url)
        return [s for s in found if s]


def _passwords(url: str) -> list[str]:
    """The password of a connection string, parsed as libpq parses it; when it does not parse,
    everything between the scheme's `user:` and the last `@` (a password may hold `@`)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        password = conninfo_to_dict(url).get("password")
        if password:
            return [str(password)]
    except Exception:  # libpq refuses it; fall back to reading the URL by hand
        pass
    head = url.split("//", 1)[-1].rsplit("@", 1)[0] if "@" in url else ""
    return [head.split(":", 1)[1]] if ":" in head else []


def default_config_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("charfix", roaming=False)) / "config.toml"


def load_settings(
    *, flags: dict[str, Any], env: dict[str, str] | None = None, config_path: Path | None = None, demo: bool = False
) -> Settings:
    env = dict(os.environ) if env is None else env
    explicit = config_path is not None or "CHARFIX_CONFIG" in env
    path = config_path or Path(env.get("CHARFIX_CONFIG") or default_config_path())
    file_values, warnings = _read_config(path, required=explicit)
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for name, (variable, key) in SOURCES.items():
        if flags.get(name) not in (None, ""):
            values[name], origins[name] = flags[name], "flag"
        elif env.get(variable):
            values[name], origins[name] = env[variable], f"environment ({variable})"
        elif file_values.get(key) not in (None, ""):
            values[name], origins[name] = file_values[key], f"config file ({path})"
    for name in ("storage_dir", "audit_log"):
        if name in values:
            values[name] = Path(str(values[name])).expanduser()
    return Settings(**values, demo=demo, config_path=path, origins=origins, warnings=tuple(warnings))


def _read_config(path: Path, *, required: bool) -> tuple[dict[str, Any], list[str]]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file {path} does not exist") from None
        return {}, []
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    warnings = []
    unknown = sorted(set(data) - KNOWN_KEYS)
    if unknown:
        warnings.append(f"config file {path}: unknown key(s) {', '.join(unknown)} ignored")
    if "service_role_key" in data and path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
        warnings.append(f"config file {path} holds the service role key and is readable by others; run: chmod 600 {path}")
    bad = [k for k in KNOWN_KEYS & set(data) if not isinstance(data[k], str)]
    if bad:
        raise ConfigError(f"config file {path}: {', '.join(sorted(bad))} must be a string")
    return data, warnings
