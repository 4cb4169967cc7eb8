"""Shared fixtures. The real model loads once per test session (under a second warm)."""

from __future__ import annotations

import os

import pytest

from tests.helpers import FakeEmbedder, copy_seed_corpus, make_settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PTB_TIMEDELTA", "1")


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture(scope="session")
def real_embedder():
    from bot.embedding import load_embedder

    return load_embedder("all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def seed_settings(tmp_path_factory):
    """Settings for a private copy of the seed corpus (tests may not touch the repo's)."""
    root = tmp_path_factory.mktemp("seed")
    corpus = copy_seed_corpus(root / "corpus")
    return make_settings(root, corpus)


@pytest.fixture(scope="session")
def seed_answerer(seed_settings, real_embedder):
    """A QuestionAnswerer over the seed corpus with the real model and real FAISS."""
    from bot.indexing import build_index
    from bot.service import QuestionAnswerer

    build_index(seed_settings, real_embedder, progress=False)
    return QuestionAnswerer(seed_settings, real_embedder).load()


@pytest.fixture
def web():
    """An HTTP server on 127.0.0.1 serving the pages and feeds a test puts on it."""
    from tests.web_server import WebServer

    server = WebServer().start()
    try:
        yield server
    finally:
        server.stop()
