"""Settings: from a dict, from .env, and the token rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import Settings
from bot.errors import ConfigError

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


def test_from_mapping_parses_every_kind_of_value():
    settings = Settings.from_mapping(
        {
            "CORPUS_DIR": "/data/articles",
            "TOP_K": "5",
            "FOUND_THRESHOLD": "0.5",
            "ALLOWED_USER_IDS": "1, 2 3",
            "EMBED_HEADER": "no",
            "EXAMPLE_QUESTIONS": "First? | Second?|",
            "UNRELATED": "ignored",
        }
    )
    assert settings.corpus_dir == Path("/data/articles") and settings.top_k == 5 and settings.found_threshold == 0.5
    assert settings.allowed_user_ids == frozenset({1, 2, 3}) and settings.embed_header is False
    assert settings.example_questions == ("First?", "Second?")


@pytest.mark.parametrize(
    "values, message",
    [
        ({"TOP_K": "many"}, "TOP_K must be a int"),
        ({"ALLOWED_USER_IDS": "12,abc"}, "ALLOWED_USER_IDS"),
        ({"CHUNK_TOKENS": "8"}, "CHUNK_TOKENS must be at least 16"),
        ({"CHUNK_OVERLAP_TOKENS": "150"}, "CHUNK_OVERLAP_TOKENS"),
        ({"EXAMPLE_QUESTIONS": "|"}, "EXAMPLE_QUESTIONS"),
    ],
)
def test_bad_values_say_which_key(values, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_mapping(values)


def test_environment_wins_over_dotenv(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(f"TOP_K=7\nTELEGRAM_BOT_TOKEN={TOKEN}\nINDEX_DIR=from-dotenv\n")
    settings = Settings.from_env({"INDEX_DIR": "from-env"}, env_file)
    assert settings.top_k == 7 and settings.index_dir == Path("from-env")
    assert settings.require_token() == TOKEN


def test_token_is_never_shown():
    settings = Settings.from_mapping({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_WEBHOOK_SECRET": "hush"})
    assert TOKEN not in repr(settings) and "hush" not in repr(settings)


@pytest.mark.parametrize("token", ["", "   ", "not-a-token", "123:short", "abc:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"])
def test_missing_or_malformed_token_explains_where_to_put_it(token):
    with pytest.raises(ConfigError) as err:
        Settings.from_mapping({"TELEGRAM_BOT_TOKEN": token}).require_token()
    message = str(err.value)
    assert "TELEGRAM_BOT_TOKEN" in message and ".env" in message and "\n" not in message
    if token.strip():
        assert token.strip() not in message


def test_log_level_is_unset_by_default_and_checked_when_set():
    assert Settings.from_mapping({}).log_level == ""  # unset: the CLI picks INFO for the bot, WARNING for the console
    assert Settings.from_mapping({"LOG_LEVEL": " debug "}).log_level == "debug"
    with pytest.raises(ConfigError, match="LOG_LEVEL must be one of DEBUG, INFO"):
        Settings.from_mapping({"LOG_LEVEL": "LOUD"})


def test_cli_honours_an_explicit_log_level_and_keeps_the_console_quiet_otherwise():
    import logging

    from bot.cli import log_level

    unset, debug, info = Settings(), Settings(log_level="DEBUG"), Settings(log_level="info")
    assert log_level(unset, verbose=False, serves_telegram=False) == logging.WARNING
    assert log_level(unset, verbose=False, serves_telegram=True) == logging.INFO
    assert log_level(debug, verbose=False, serves_telegram=False) == logging.DEBUG
    assert log_level(info, verbose=False, serves_telegram=False) == logging.INFO
    assert log_level(Settings(log_level="ERROR"), verbose=False, serves_telegram=True) == logging.ERROR
    assert log_level(unset, verbose=True, serves_telegram=False) == logging.DEBUG


def test_vector_store_is_faiss_or_qdrant():
    assert Settings.from_mapping({}).vector_store == "faiss"
    assert Settings.from_mapping({"VECTOR_STORE": "qdrant", "QDRANT_LOCATION": ":memory:"}).qdrant_location == ":memory:"
    with pytest.raises(ConfigError, match="VECTOR_STORE"):
        Settings.from_mapping({"VECTOR_STORE": "pinecone"})
