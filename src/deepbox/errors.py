"""The one error type users see: a sentence saying what is wrong and how to fix it."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    INTERRUPTED = 130


class DeepboxError(Exception):
    """An error with a message meant for the user; the CLI prints it without a traceback."""

    def __init__(self, message: str, *, exit_code: ExitCode = ExitCode.ERROR, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        # Extra lines (a build log tail, a container log) shown under the sentence.
        self.detail = detail


class ConfigError(DeepboxError):
    """The box configuration is malformed; the message names the file and the key path."""
