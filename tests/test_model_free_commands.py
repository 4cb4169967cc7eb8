"""Commands that need no model never import torch, sentence-transformers or onnxruntime (seconds of start-up).

Each command runs in a fresh process that reports which heavy modules it imported. The index
is built with the fake embedder and the process is told that model's id, so nothing here
could load a real model even by mistake, and a test fails only because the import happened.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bot.indexing import build_index
from tests.helpers import REPO, FakeEmbedder, make_settings, small_corpus

HEAVY = ("torch", "sentence_transformers", "transformers", "onnxruntime")

_PROBE = f"""
import json, sys
from bot.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({{"code": code, "heavy": sorted(m for m in {HEAVY!r} if m in sys.modules)}}), file=sys.stderr)
"""


def run_probe(*args: str, cwd, env: dict) -> tuple[dict, subprocess.CompletedProcess]:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), **env}
    environment.pop("TELEGRAM_BOT_TOKEN", None)
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], cwd=cwd, capture_output=True, text=True, env=environment, timeout=120
    )
    return json.loads(result.stderr.strip().splitlines()[-1]), result


@pytest.fixture
def fake_model_index(tmp_path):
    settings = make_settings(tmp_path, small_corpus(tmp_path))
    build_index(settings, FakeEmbedder(), progress=False)
    env = {"CORPUS_DIR": str(settings.corpus_dir), "INDEX_DIR": str(settings.index_dir), "EMBEDDING_MODEL": "fake-hash-64"}
    return tmp_path, env


def test_sources_lists_articles_without_importing_the_model(fake_model_index):
    cwd, env = fake_model_index
    probe, result = run_probe("sources", cwd=cwd, env=env)
    assert probe == {"code": 0, "heavy": []}
    assert "Article 0" in result.stdout and "Article 2" in result.stdout


def test_index_with_nothing_to_do_imports_no_model(fake_model_index):
    cwd, env = fake_model_index
    probe, result = run_probe("index", "--json", cwd=cwd, env=env)
    assert probe == {"code": 0, "heavy": []}
    report = json.loads(result.stdout)
    assert report["articles_unchanged"] == 3 and report["articles_added"] == 0 and report["chunks_embedded"] == 0


def test_missing_index_error_imports_no_model(tmp_path):
    corpus = small_corpus(tmp_path)
    env = {"CORPUS_DIR": str(corpus), "INDEX_DIR": str(tmp_path / "index")}
    probe, result = run_probe("ask", "who leads the party?", cwd=tmp_path, env=env)
    assert probe == {"code": 2, "heavy": []}
    assert "no index" in result.stderr and "python -m bot index" in result.stderr


def test_help_imports_no_model(tmp_path):
    probe, result = run_probe("--help", cwd=tmp_path, env={})
    assert probe == {"code": 0, "heavy": []}
    assert "index" in result.stdout


def test_the_onnx_question_encoder_setting_imports_nothing_heavy_either(fake_model_index, tmp_path):
    """QUESTION_ENCODER=onnx changes how questions are embedded, not what listing or a no-op index loads."""
    cwd, env = fake_model_index
    env = {**env, "QUESTION_ENCODER": "onnx", "ONNX_CACHE_DIR": str(tmp_path / "onnx")}
    for command in (("sources",), ("index", "--json")):
        probe, _ = run_probe(*command, cwd=cwd, env=env)
        assert probe == {"code": 0, "heavy": []}, command
    assert not (tmp_path / "onnx").exists()
