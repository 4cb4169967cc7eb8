"""One settings object, built from the environment and ``.env`` (tests: from a dict).

Every key is documented in ``.env.example``. The Telegram token is only needed to
run the bot; nothing else reads it, and its repr never shows it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Mapping

from bot.errors import ConfigError

DEFAULT_MODEL = "all-MiniLM-L6-v2"

# Largest article the corpus reader accepts, in bytes (see MAX_ARTICLE_BYTES in .env.example).
# The largest MultiHop-RAG benchmark article is about 71 KB; 2 MB is a long book chapter.
DEFAULT_MAX_ARTICLE_BYTES = 2_000_000

# Questions in line before the bot refuses more: what the bot answers in 7-12 s under load
# (``python -m bot eval load`` measured 17-30 answers/s; README "A crowd, Telegram faults and shutdown").
DEFAULT_QUEUE_SIZE = 200
DEFAULT_FETCH_MAX_BYTES = 5_000_000
DEFAULT_USER_AGENT = "newsbot/0.1 (a news question-answering bot; fetches articles its admins add; honours robots.txt)"

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
VECTOR_STORES = ("faiss", "qdrant")
QUESTION_ENCODERS = ("torch", "onnx")

# A Bot API token is "<bot id>:<35-ish url-safe chars>".
_TOKEN_SHAPE = re.compile(r"^\d{3,}:[A-Za-z0-9_-]{20,}$")


def _ids(value: str) -> frozenset[int]:
    parts = [p for p in re.split(r"[,\s]+", value.strip()) if p]
    try:
        return frozenset(int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"expected comma-separated numeric ids, got {value!r}") from None


def _questions(value: str) -> tuple[str, ...]:
    questions = tuple(q.strip() for q in value.split("|") if q.strip())
    if not questions:
        raise ConfigError("expected questions separated by |")
    return questions


def _words(value: str) -> tuple[str, ...]:
    """Comma- or space-separated items (URLs, host names), empty ones dropped."""
    return tuple(p for p in re.split(r"[,\s]+", value.strip()) if p)


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    corpus_dir: Path = Path("corpus")
    index_dir: Path = Path("index")
    embedding_model: str = DEFAULT_MODEL
    embedding_batch_size: int = 32
    # How questions are embedded: "onnx" (the chunks' model exported to ONNX Runtime int8: 2.7x
    # faster per question, MultiHop-RAG and seed set within 0.005, README "Scaling") or "torch".
    question_encoder: str = "onnx"
    onnx_cache_dir: Path | None = None  # where the exported model is kept; unset: the user's cache
    chunk_tokens: int = 200
    chunk_overlap_tokens: int = 25
    # Prefix "title / outlet, date" to what is embedded and to what BM25 indexes (never to
    # what is shown): a passage that says "the party" then still matches "MQM-P".
    embed_header: bool = True
    lexical_header: bool = True
    top_k: int = 3
    # Calibrated on the seed gold set and out-of-corpus questions: see README "Not found".
    found_threshold: float = 0.40
    telegram_bot_token: str = field(default="", repr=False)
    telegram_base_url: str = ""  # e.g. http://127.0.0.1:8081/bot for a self-hosted Bot API server
    telegram_webhook_url: str = ""  # public HTTPS URL; set to serve by webhook instead of polling
    telegram_webhook_listen: str = "127.0.0.1"
    telegram_webhook_port: int = 8443
    telegram_webhook_secret: str = field(default="", repr=False)
    allowed_user_ids: frozenset[int] = frozenset()  # empty: everyone
    allowed_chat_ids: frozenset[int] = frozenset()  # empty: every chat
    admin_user_ids: frozenset[int] = frozenset()
    questions_per_minute: int = 10
    index_poll_seconds: float = 5.0  # how often the bot looks for an index rebuilt by another process
    # Three questions /start offers as buttons; they should suit the corpus ("|" between them).
    example_questions: tuple[str, ...] = (
        "Who leads the Bahadurabad group?",
        "When did the PSP merge into the MQM-P?",
        "Who is the mayor of Karachi?",
    )
    # Empty (unset): INFO for the Telegram bot, WARNING for console commands (see .env.example).
    log_level: str = ""
    strict: bool = False
    # Files (and JSON records) above this size are skipped and reported; a .json/.jsonl file of
    # many articles may be up to 50 times larger (see ``bot.corpus``).
    max_article_bytes: int = DEFAULT_MAX_ARTICLE_BYTES
    # Questions accepted and not yet answered, at most (see QUEUE_SIZE in .env.example).
    queue_size: int = DEFAULT_QUEUE_SIZE
    # A question expected to wait at least this long is told its place in line at once.
    busy_notice_seconds: float = 5.0
    # After SIGTERM: seconds to keep answering the questions already in line.
    shutdown_grace_seconds: float = 8.0
    # -- adding news (bot/ingest): links, feeds, uploads; see .env.example "Adding news" --
    data_dir: Path = Path("data")  # SQLite state: feeds' ETags and seen items, follows
    feeds_file: Path = Path("feeds.txt")  # one feed URL a line (not in corpus/: a .txt there is an article)
    feed_urls: tuple[str, ...] = ()
    feed_poll_minutes: float = 30.0  # the running bot polls the feeds this often (0: never)
    fetch_timeout_seconds: float = 15.0  # a whole request, connect to last byte
    # Largest page or feed downloaded. News pages with inline scripts run 0.3-2 MB; 5 MB leaves room.
    fetch_max_bytes: int = DEFAULT_FETCH_MAX_BYTES
    fetch_user_agent: str = DEFAULT_USER_AGENT
    # Hosts (or host:port) exempt from the refusal of private, loopback and link-local addresses; "*": all.
    allow_private_hosts: tuple[str, ...] = ()
    host_requests_per_minute: int = 30  # politeness: more to one host waits for the next poll
    follow_pushes_per_chat: int = 3  # messages one chat gets about its follows after one update
    question_retention_days: int = 30  # answers and votes (question text) are deleted after this
    vector_store: str = "faiss"  # or "qdrant" (see .env.example)
    qdrant_location: str = ""  # URL, folder or ":memory:"; empty: <index_dir>/qdrant
    # Above this many rows a build stores an HNSW graph and the FAISS store searches it instead
    # of scanning every row. Measured on two cores (a searched text takes 1,000 rows): exact
    # search 61 ms at 100k rows, 111 ms at 200k; the graph 8 ms at 100k, built in 19-36 s once.
    approximate_above: int = 100_000

    # env key -> (field name, parser)
    _KEYS = {
        "CORPUS_DIR": ("corpus_dir", Path),
        "INDEX_DIR": ("index_dir", Path),
        "EMBEDDING_MODEL": ("embedding_model", str),
        "EMBEDDING_BATCH_SIZE": ("embedding_batch_size", int),
        "QUESTION_ENCODER": ("question_encoder", str),
        "ONNX_CACHE_DIR": ("onnx_cache_dir", Path),
        "CHUNK_TOKENS": ("chunk_tokens", int),
        "CHUNK_OVERLAP_TOKENS": ("chunk_overlap_tokens", int),
        "EMBED_HEADER": ("embed_header", _bool),
        "LEXICAL_HEADER": ("lexical_header", _bool),
        "TOP_K": ("top_k", int),
        "FOUND_THRESHOLD": ("found_threshold", float),
        "TELEGRAM_BOT_TOKEN": ("telegram_bot_token", str),
        "TELEGRAM_BASE_URL": ("telegram_base_url", str),
        "TELEGRAM_WEBHOOK_URL": ("telegram_webhook_url", str),
        "TELEGRAM_WEBHOOK_LISTEN": ("telegram_webhook_listen", str),
        "TELEGRAM_WEBHOOK_PORT": ("telegram_webhook_port", int),
        "TELEGRAM_WEBHOOK_SECRET": ("telegram_webhook_secret", str),
        "ALLOWED_USER_IDS": ("allowed_user_ids", _ids),
        "ALLOWED_CHAT_IDS": ("allowed_chat_ids", _ids),
        "ADMIN_USER_IDS": ("admin_user_ids", _ids),
        "QUESTIONS_PER_MINUTE": ("questions_per_minute", int),
        "INDEX_POLL_SECONDS": ("index_poll_seconds", float),
        "EXAMPLE_QUESTIONS": ("example_questions", _questions),
        "LOG_LEVEL": ("log_level", str),
        "STRICT": ("strict", _bool),
        "MAX_ARTICLE_BYTES": ("max_article_bytes", int),
        "QUEUE_SIZE": ("queue_size", int),
        "BUSY_NOTICE_SECONDS": ("busy_notice_seconds", float),
        "SHUTDOWN_GRACE_SECONDS": ("shutdown_grace_seconds", float),
        "DATA_DIR": ("data_dir", Path),
        "FEEDS_FILE": ("feeds_file", Path),
        "FEED_URLS": ("feed_urls", _words),
        "FEED_POLL_MINUTES": ("feed_poll_minutes", float),
        "FETCH_TIMEOUT_SECONDS": ("fetch_timeout_seconds", float),
        "FETCH_MAX_BYTES": ("fetch_max_bytes", int),
        "FETCH_USER_AGENT": ("fetch_user_agent", str),
        "ALLOW_PRIVATE_HOSTS": ("allow_private_hosts", _words),
        "HOST_REQUESTS_PER_MINUTE": ("host_requests_per_minute", int),
        "FOLLOW_PUSHES_PER_CHAT": ("follow_pushes_per_chat", int),
        "QUESTION_RETENTION_DAYS": ("question_retention_days", int),
        "VECTOR_STORE": ("vector_store", str),
        "QDRANT_LOCATION": ("qdrant_location", str),
        "APPROXIMATE_ABOVE": ("approximate_above", int),
    }

    @classmethod
    def from_mapping(cls, values: Mapping[str, str]) -> Settings:
        """Build settings from ``KEY=value`` strings; unknown keys are ignored."""
        kwargs = {}
        for key, (name, parse) in cls._KEYS.items():
            raw = values.get(key)
            if raw is None or str(raw).strip() == "":
                continue
            try:
                kwargs[name] = parse(str(raw).strip())
            except ConfigError as exc:
                raise ConfigError(f"{key}: {exc}") from None
            except ValueError:
                raise ConfigError(f"{key} must be a {parse.__name__}, got {raw!r}") from None
        settings = cls(**kwargs)
        settings.validate()
        return settings

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, env_file: str | Path = ".env") -> Settings:
        """The environment wins over ``.env``, which wins over the defaults."""
        merged: dict[str, str] = {}
        path = Path(env_file)
        if path.is_file():
            from dotenv import dotenv_values

            merged.update({k: v for k, v in dotenv_values(path).items() if v is not None})
        merged.update(os.environ if environ is None else environ)
        return cls.from_mapping(merged)

    def with_overrides(self, **changes) -> Settings:
        """A copy with some fields replaced (CLI flags); ``None`` values are ignored."""
        changes = {k: v for k, v in changes.items() if v is not None}
        updated = replace(self, **changes)
        updated.validate()
        return updated

    def validate(self) -> None:
        if self.chunk_tokens < 16:
            raise ConfigError("CHUNK_TOKENS must be at least 16")
        if not 0 <= self.chunk_overlap_tokens < self.chunk_tokens // 2:
            raise ConfigError("CHUNK_OVERLAP_TOKENS must be between 0 and half of CHUNK_TOKENS")
        if self.top_k < 1:
            raise ConfigError("TOP_K must be at least 1")
        if self.max_article_bytes < 1:
            raise ConfigError("MAX_ARTICLE_BYTES must be at least 1")
        if self.queue_size < 1:
            raise ConfigError("QUEUE_SIZE must be at least 1")
        if self.busy_notice_seconds < 0 or self.shutdown_grace_seconds < 0:
            raise ConfigError("BUSY_NOTICE_SECONDS and SHUTDOWN_GRACE_SECONDS must not be negative")
        if self.fetch_timeout_seconds <= 0 or self.fetch_max_bytes < 1 or self.host_requests_per_minute < 1:
            raise ConfigError("FETCH_TIMEOUT_SECONDS, FETCH_MAX_BYTES and HOST_REQUESTS_PER_MINUTE must be positive")
        if self.approximate_above < 0:
            raise ConfigError("APPROXIMATE_ABOVE must not be negative")
        if self.question_encoder not in QUESTION_ENCODERS:
            raise ConfigError(f"QUESTION_ENCODER must be one of {', '.join(QUESTION_ENCODERS)}, got {self.question_encoder[:20]!r}")
        if self.vector_store not in VECTOR_STORES:
            raise ConfigError(f"VECTOR_STORE must be one of {', '.join(VECTOR_STORES)}, got {self.vector_store[:20]!r}")
        if self.log_level and self.log_level.strip().upper() not in LOG_LEVELS:
            raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)} (or empty), got {self.log_level[:20]!r}")

    @property
    def onnx_cache(self) -> Path:
        """The folder holding the ONNX question encoder's exported model."""
        if self.onnx_cache_dir is not None:
            return self.onnx_cache_dir
        # One export per machine and weights (the folder is keyed by them), shared by every
        # checkout, test run and process, like a model hub's cache.
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "newsbot" / "onnx"

    @property
    def telegram_configured(self) -> bool:
        """A token is set, so `start` serves Telegram rather than the console chat."""
        return bool(self.telegram_bot_token.strip())

    def require_token(self) -> str:
        """The bot token, or a one-line explanation of where to put it (never echoing it)."""
        token = self.telegram_bot_token.strip()
        if not token:
            raise ConfigError(
                "no Telegram token: set TELEGRAM_BOT_TOKEN in the environment or in .env "
                "(get one from @BotFather); without it, `python -m bot chat` answers in the console"
            )
        if not _TOKEN_SHAPE.match(token):
            raise ConfigError(
                "TELEGRAM_BOT_TOKEN does not look like a Bot API token (expected '<digits>:<letters>' "
                "as @BotFather gives it); check the value in the environment or .env"
            )
        return token

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in fields(self)]
