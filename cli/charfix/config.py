"""Settings from flags, then the environment, then the config file (`~/.config/charfix/config.toml`).

Each setting remembers where it came from, so errors and `doctor` can say so.
"""

from __future__ import annotations

import os
import re
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
    """The password of a connection string as libpq parses it (percent-decoded) and as it is
    written; when libpq cannot parse it, everything between the scheme's `user:` and the last `@`
    (a password may hold `@`). Both forms, because libpq's errors quote the string as written."""
    from psycopg.conninfo import conninfo_to_dict

    found = []
    try:
        found.append(str(conninfo_to_dict(url).get("password") or ""))
    except Exception:  # libpq refuses it; the hand reading below still finds it
        pass
    head = url.split("//", 1)[-1].rsplit("@", 1)[0] if "@" in url else ""
    if ":" in head:
        found.append(head.split(":", 1)[1])
    return [p for p in dict.fromkeys(found) if p]


# Credentials recognised by their shape, for messages that quote a string charfix was never told is
# secret (a libpq error quoting a URL typed elsewhere, a traceback): a URL's `user:password@`, a
# conninfo `password=`, a JWT (Supabase's legacy keys) and a new-style `sb_secret_` key.
CREDENTIALS = (
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/?#@\s\"']*:)[^\s\"']*(?=@)"), r"\1***"),
    (re.compile(r"(?i)\b(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s'\"&]+)"), r"\1***"),
    (re.compile(r"\beyJ[\w-]{6,}\.[\w-]{6,}\.[\w-]+"), "***"),
    (re.compile(r"\bsb_secret_[\w-]+"), "***"),
)


def mask_credentials(text: str) -> str:
    """`text` with every credential-shaped part replaced by `***` (see CREDENTIALS)."""
    for pattern, replacement in CREDENTIALS:
        text = pattern.sub(replacement, text)
    return text


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
    if origins.get("db_url") == "flag" and _passwords(str(values["db_url"])):
        warnings.append("--db-url holds a password, which every user of this machine can read in the process "
                        "list; set SUPABASE_DB_URL or db_url in the config file instead")
    return Settings(**values, demo=demo, config_path=path, origins=origins, warnings=tuple(warnings))


def _read_config(path: Path, *, required: bool) -> tuple[dict[str, Any], list[str]]:
    try:
        with path.open("rb") as file:
            # The mode and owner of the file that was read, not of whatever is at the path afterwards.
            status = os.fstat(file.fileno())
            raw = file.read()
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file {path} does not exist") from None
        return {}, []
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    if raw.strip():  # an empty file (CHARFIX_CONFIG=/dev/null, say) configures nothing
        _refuse_foreign(path, status)
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    warnings = []
    unknown = sorted(set(data) - KNOWN_KEYS)
    if unknown:
        warnings.append(f"config file {path}: unknown key(s) {', '.join(unknown)} ignored")
    bad = [k for k in KNOWN_KEYS & set(data) if not isinstance(data[k], str)]
    if bad:
        raise ConfigError(f"config file {path}: {', '.join(sorted(bad))} must be a string")
    held = _secrets_held(data)
    if held and status.st_mode & (stat.S_IRGRP | stat.S_IROTH):
        warnings.append(f"config file {path} holds {held} and is readable by others; run: chmod 600 {path}")
    return data, warnings


def _refuse_foreign(path: Path, status: os.stat_result) -> None:
    """A config file someone else can write chooses the database and storage charfix writes to
    with the service role (docs/reliability.md, "Secrets"): refuse it, as ssh refuses such a file.
    Root's files are trusted: root could change charfix itself."""
    if status.st_mode & stat.S_IWOTH:
        raise ConfigError(f"config file {path} is writable by every user; refusing it",
                          hint=f"run: chmod 600 {path}")
    owner = getattr(os, "getuid", lambda: status.st_uid)()
    if status.st_uid not in (owner, 0):
        raise ConfigError(f"config file {path} belongs to another user (uid {status.st_uid}); refusing it",
                          hint="use a config file of your own (--config or CHARFIX_CONFIG)")


def _secrets_held(data: dict[str, Any]) -> str:
    held = []
    if isinstance(data.get("db_url"), str) and _passwords(data["db_url"]):
        held.append("the database password")
    if data.get("service_role_key"):
        held.append("the service role key")
    return " and ".join(held)
