"""Errors carry the reason a run stopped and the exit code it maps to; `app` turns them into one line."""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    JOBS_FAILED = 1  # some repairs failed; the others were done
    USAGE = 2  # bad input: not a uuid, unknown option value (Typer uses 2 as well)
    CONFIG = 3  # nothing to connect to, or a bad config file
    NOT_FOUND = 4  # a job id that is not in the database
    BACKEND = 5  # the database or storage failed or refused
    REFUSED = 6  # a safety rule forbids the write asked for
    NEEDS_PERSON = 7  # a one-job write wrote nothing: the job needs a person (needs_review, lost, ...)
    INTERNAL = 70  # a bug in charfix (EX_SOFTWARE); --debug shows the traceback
    INTERRUPTED = 130  # 128 + SIGINT
    TERMINATED = 143  # 128 + SIGTERM: a writing command stopped after the work in flight


class CharfixError(Exception):
    exit_status = ExitStatus.USAGE

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(CharfixError):
    exit_status = ExitStatus.USAGE


class ConfigError(CharfixError):
    exit_status = ExitStatus.CONFIG


class NotFoundError(CharfixError):
    exit_status = ExitStatus.NOT_FOUND


class BackendError(CharfixError):
    exit_status = ExitStatus.BACKEND


class ConnectionLostError(BackendError):
    """The database connection broke: nothing more can be done in this run."""


class SchemaError(BackendError):
    """The live tables lack a column charfix needs."""


class ChangedError(BackendError):
    """A conditional write matched nothing: someone changed the row since it was read."""


class RefusedError(CharfixError):
    exit_status = ExitStatus.REFUSED
