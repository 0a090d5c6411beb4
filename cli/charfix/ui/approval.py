"""What a write prompt shows right above its question: where it writes (database, storage, and the
config's `label`, in colour) and the exact plan. `--dry-run` prints the same block."""

from __future__ import annotations

from urllib.parse import urlparse

from rich.console import Console
from rich.text import Text

from charfix.config import Settings
from charfix.ui.safe import terminal_text

LABEL_STYLE = "bold reverse yellow"


def target_text(settings: Settings) -> Text:
    """`target  database charfix on db.example.com:5432 · storage Supabase project abcd  [production]`."""
    text = Text.assemble(("target  ", "bold"), where(settings))
    if settings.label:
        text.append("  ")
        text.append(f" {terminal_text(settings.label)} ", style=LABEL_STYLE)
    return text


def where(settings: Settings) -> str:
    if settings.demo:
        return "the embedded demo (database and storage on this machine)"
    if settings.db_url:
        tables = f"database {_database(settings.db_url)}"
    else:
        tables = f"Supabase project {project_ref(settings.supabase_url)}"
    if settings.storage_dir is not None:
        objects = f"storage {settings.storage_dir}"
    else:
        objects = f"storage of Supabase project {project_ref(settings.supabase_url)}"
    return f"{tables} · {objects}"


def short_where(settings: Settings) -> str:
    """A few words for the question itself: the label, else the database or project."""
    if settings.label:
        return terminal_text(settings.label)
    if settings.demo:
        return "the demo"
    if settings.db_url:
        return _database(settings.db_url)
    return f"project {project_ref(settings.supabase_url)}"


def project_ref(url: str | None) -> str:
    """`https://abcd.supabase.co` -> abcd; any other URL by its host and port."""
    host = urlparse(url or "").netloc or (url or "?")
    return host.split(".", 1)[0] if host.endswith(".supabase.co") else host


def _database(url: str) -> str:
    """`name on host:port`, as libpq reads the connection string (never its password)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(url)
    except Exception:  # libpq refuses it: connecting failed already, this is only a label
        return "(unreadable connection string)"
    host = parts.get("host") or parts.get("hostaddr") or "localhost"
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"{parts.get('dbname') or parts.get('user') or '?'} on {host}{port}"


def show_target(console: Console, settings: Settings) -> None:
    console.print(target_text(settings), soft_wrap=False)
