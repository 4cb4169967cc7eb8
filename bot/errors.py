"""The core's own errors. Each message says what to do next; edges translate them.

The CLI prints them and exits non-zero; the Telegram adapter replies politely and logs.
"""

from __future__ import annotations


class BotError(Exception):
    """Base of every error the core raises on purpose."""


class ConfigError(BotError):
    """A setting is missing or malformed."""


class CorpusError(BotError):
    """The corpus cannot be used at all (missing folder, no readable article)."""


class IndexMissingError(BotError):
    """There is no built index where one was expected."""


class IndexMismatchError(BotError):
    """The index on disk was built with other settings than the ones in force."""


class IndexCorruptError(BotError):
    """The index directory exists but cannot be read."""


class ArticleError(BotError):
    """One article file could not be read; the build reports it and goes on."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self):  # keeps copy/pickle working with the two-argument constructor
        return (type(self), (self.path, self.reason))
