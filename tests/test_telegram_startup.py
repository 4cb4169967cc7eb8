"""Start-up failures of ``python -m bot run``: one plain line, a non-zero exit, never the token.

The Bot API is ``FakeBotApi`` on 127.0.0.1, which answers like Telegram: 401 for a token it
does not know, 404 for a path that is not ``/bot<token>/<method>``. "Unreachable" is a local
port with nothing listening.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from bot import cli
from tests.fake_bot_api import FakeBotApi
from tests.helpers import REPO

WRONG_TOKEN = "987654:WRONG-secret-token-abcdefghijklmnop"
WAIT = 120.0


def _env(**values: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "INDEX_", "CORPUS_", "LOG_LEVEL"))}
    env.update(PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", INDEX_POLL_SECONDS="0")
    env.update(values)
    return env


def _run_bot(tmp_path, seed_settings, **values: str) -> subprocess.CompletedProcess:
    env = _env(CORPUS_DIR=str(seed_settings.corpus_dir), INDEX_DIR=str(seed_settings.index_dir), **values)
    return subprocess.run(
        [sys.executable, "-m", "bot", "run"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=WAIT, check=False
    )


def _assert_one_line_without_token(result: subprocess.CompletedProcess, token: str) -> str:
    output = result.stdout + result.stderr
    assert token not in output and token.split(":")[1] not in output
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), result.stderr[-3000:]
    assert "Traceback" not in output
    assert result.stderr.startswith("error: ")
    return result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rejected_token_is_one_line_without_the_token(tmp_path, seed_settings, seed_answerer):
    with FakeBotApi() as server:  # knows only its own token: ours gets 401 Unauthorized
        result = _run_bot(tmp_path, seed_settings, TELEGRAM_BOT_TOKEN=WRONG_TOKEN, TELEGRAM_BASE_URL=server.base_url)
        assert [c.status for c in server.calls("getMe")] == [401]
    line = _assert_one_line_without_token(result, WRONG_TOKEN)
    assert "rejected the bot token" in line and "TELEGRAM_BOT_TOKEN" in line
    assert result.returncode == 2


def test_base_url_answering_404_is_reported_as_a_rejected_token(tmp_path, seed_settings, seed_answerer):
    with FakeBotApi() as server:  # a base URL not ending in /bot: Telegram says 404 Not Found
        base = f"http://127.0.0.1:{server.port}/wrong"
        result = _run_bot(tmp_path, seed_settings, TELEGRAM_BOT_TOKEN=server.token, TELEGRAM_BASE_URL=base)
    line = _assert_one_line_without_token(result, server.token)
    assert "rejected the bot token" in line and "TELEGRAM_BASE_URL" in line


def test_unreachable_bot_api_is_one_line_naming_the_url_not_the_token(tmp_path, seed_settings, seed_answerer):
    base = f"http://127.0.0.1:{_free_port()}/bot"
    result = _run_bot(tmp_path, seed_settings, TELEGRAM_BOT_TOKEN=WRONG_TOKEN, TELEGRAM_BASE_URL=base)
    line = _assert_one_line_without_token(result, WRONG_TOKEN)
    assert line.startswith(f"error: cannot reach the Telegram Bot API at {base}: ")
    assert "TELEGRAM_BASE_URL" in line
    assert result.returncode == 2


@pytest.mark.parametrize("verbose", [False, True])
def test_unexpected_errors_never_print_the_token(tmp_path, monkeypatch, capsys, verbose):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", WRONG_TOKEN)

    def broken(args, settings):
        raise RuntimeError(f"The token `{WRONG_TOKEN}` was rejected\nby https://api.telegram.org/bot{WRONG_TOKEN}/getMe")

    monkeypatch.setitem(cli.COMMANDS, "sources", broken)
    code = cli.main(["sources"] + (["-v"] if verbose else []))
    out, err = capsys.readouterr()
    assert code == 1
    assert WRONG_TOKEN not in out + err and WRONG_TOKEN.split(":")[1] not in out + err
    assert "[redacted-token]" in err
    if verbose:
        assert "Traceback" in err and "RuntimeError" in err
    else:
        assert err.count("\n") == 1 and err.startswith("error: unexpected RuntimeError: The token `[redacted-token]`")
