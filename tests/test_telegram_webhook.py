"""Webhook mode: the real PTB webhook server on loopback, with the secret header enforced."""

from __future__ import annotations

import dataclasses
import socket
import time

import httpx
import pytest

from bot.errors import ConfigError
from bot.telegram_app import build_application, webhook_options
from tests.fake_bot_api import FakeBotApi, fake_bot_api

__all__ = ["fake_bot_api"]

SECRET = "s3cret_Token-123"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_webhook_needs_a_well_formed_secret_and_https_url(seed_settings):
    base = dataclasses.replace(seed_settings, telegram_webhook_url="https://bot.example.com/hook")
    with pytest.raises(ConfigError, match="TELEGRAM_WEBHOOK_SECRET"):
        webhook_options(base)
    with pytest.raises(ConfigError, match="TELEGRAM_WEBHOOK_SECRET"):
        webhook_options(dataclasses.replace(base, telegram_webhook_secret="has spaces!"))
    with pytest.raises(ConfigError, match="https://"):
        webhook_options(dataclasses.replace(base, telegram_webhook_secret=SECRET, telegram_webhook_url="http://x/hook"))
    options = webhook_options(dataclasses.replace(base, telegram_webhook_secret=SECRET))
    assert options["url_path"] == "hook" and options["secret_token"] == SECRET


@pytest.mark.asyncio
async def test_webhook_refuses_forged_updates_and_answers_real_ones(fake_bot_api: FakeBotApi, seed_answerer):
    server = fake_bot_api
    port = _free_port()
    settings = dataclasses.replace(
        seed_answerer.settings,
        telegram_bot_token=server.token,
        telegram_base_url=server.base_url,
        telegram_webhook_url="https://bot.example.com/telegram/hook",  # only told to the Bot API server
        telegram_webhook_listen="127.0.0.1",
        telegram_webhook_port=port,
        telegram_webhook_secret=SECRET,
        index_poll_seconds=0,
    )
    options = webhook_options(settings)
    app = build_application(settings, seed_answerer)
    ann = server.user(4242, "Ann")
    server.private_chat(ann)
    update = {
        "update_id": 1,
        "message": {
            "message_id": 1,
            "date": int(time.time()),
            "chat": {"id": ann["id"], "type": "private", "first_name": "Ann"},
            "from": {"id": ann["id"], "is_bot": False, "first_name": "Ann"},
            "text": "Who leads the Bahadurabad group?",
        },
    }
    await app.initialize()
    await app.updater.start_webhook(**options)
    await app.start()
    try:
        registered = server.webhook()
        assert registered["url"] == "https://bot.example.com/telegram/hook"
        assert registered["params"]["secret_token"] == SECRET
        url = f"http://127.0.0.1:{port}/telegram/hook"
        async with httpx.AsyncClient() as client:
            forged = await client.post(url, json=update)
            wrong = await client.post(url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "nope"})
            assert forged.status_code == 403 and wrong.status_code == 403
            assert server.sent_messages(ann["id"]) == []
            genuine = await client.post(url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})
            assert genuine.status_code == 200
        [reply] = await server.async_wait_for_messages(ann["id"], 1, timeout=60)
        assert "led by MQM-P president Dr Khalid Maqbool Siddiqui" in reply.text
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()
    assert server.errors() == []
