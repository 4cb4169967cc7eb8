"""``python -m bot eval load`` with a few users: the command runs the echo bots and the news
bot through the Bot API server on 127.0.0.1 and reports what the crowd met. (The benchmark
itself is not a timed test: the numbers are in the README.)"""

from __future__ import annotations

import json

import pytest

from bot.cli import main
from bot.loadtest import percentile


def test_eval_load_command_reports_every_bot_with_no_reply_lost(capsys):
    assert main(["eval", "load", "--users", "3", "--questions", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [row["bot"] for row in report["rows"]] == ["echo", "echo+flood", "news bot"]
    for row in report["rows"]:
        assert row["users"] == 3 and row["asked"] == 6 and row["replies"] == 6 and row["lost"] == 0
        assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"] <= row["max_ms"] < 60_000
    news = report["rows"][2]
    assert news["refused"] == 0
    assert report["p95_ratio"] == pytest.approx(news["p95_ms"] / report["rows"][0]["p95_ms"], abs=0.06)
    flood_floor = report["rows"][1]["p95_ms"] / report["rows"][0]["p95_ms"]
    assert report["p95_ratio_flood_echo_to_echo"] == pytest.approx(flood_floor, abs=0.06)


def test_eval_load_refuses_an_unbounded_crowd(capsys):
    assert main(["eval", "load", "--users", "100000"]) == 2
    assert "--users must be 1..1000" in capsys.readouterr().err


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert [percentile(values, p) for p in (0.5, 0.95, 0.99, 1.0)] == [50, 95, 99, 100]
    assert percentile([7.0], 0.95) == 7.0 and percentile([], 0.5) is None
