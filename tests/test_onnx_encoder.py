"""The ONNX Runtime int8 question encoder: close to torch, cached once, switched by a setting.

One real export (torch.onnx.export + quantize_dynamic, about 10-25 s here) is shared by the
whole session; tests that damage a cache work on a copy of it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from bot import onnx_encoder
from bot.config import DEFAULT_MODEL, Settings
from bot.embedding import resolve_model_path
from bot.errors import ConfigError

QUESTIONS = [
    "Who leads the Bahadurabad group?",
    "When did the PSP merge into the MQM-P?",
    "Which WhatsApp group did Mustafa Kamal and Anees Qaimkhani leave?",
    "Which company, reported by TechCrunch and The Verge, faces an antitrust lawsuit filed by the DOJ?",
    "Who is the mayor of Karachi?",
]
# Politics for the first 256 word pieces, then something else entirely: a vector pooled over
# the untruncated text would point elsewhere.
LONG_TEXT = ("The Bahadurabad group of the MQM-P held a rally in Liaquatabad on Sunday. " * 20
             + "Knead the dough, let it rise for an hour and bake the bread at two hundred degrees. " * 30)


@pytest.fixture(scope="session")
def onnx_cache():
    """The default cache the service uses too: one export per machine, not one per test run."""
    return Settings().onnx_cache


@pytest.fixture(scope="session")
def onnx_question_encoder(onnx_cache):
    return onnx_encoder.OnnxQuestionEncoder(DEFAULT_MODEL, onnx_cache)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)


def test_question_vectors_are_within_cosine_099_of_torch(onnx_question_encoder, real_embedder):
    onnx_vectors = onnx_question_encoder.embed(QUESTIONS)
    torch_vectors = real_embedder.embed(QUESTIONS)
    assert onnx_vectors.shape == torch_vectors.shape == (len(QUESTIONS), 384)
    assert onnx_vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(onnx_vectors, axis=1), 1.0, atol=1e-5)
    assert _cosines(onnx_vectors, torch_vectors).min() >= 0.99
    assert onnx_question_encoder.embed([]).shape == (0, 384)


def test_long_text_is_truncated_where_sentence_transformers_truncates(onnx_question_encoder, real_embedder):
    assert onnx_question_encoder.max_tokens == real_embedder.max_tokens == 256
    assert real_embedder.count_tokens([LONG_TEXT])[0] > 600
    cosine = _cosines(onnx_question_encoder.embed([LONG_TEXT]), real_embedder.embed([LONG_TEXT]))[0]
    assert cosine >= 0.99


def test_a_questions_vector_does_not_depend_on_its_batch(onnx_question_encoder):
    """Dynamic int8 scales activations over the batch: each text is run alone."""
    together = onnx_question_encoder.embed([QUESTIONS[0], LONG_TEXT])
    alone = onnx_question_encoder.embed([QUESTIONS[0]])
    assert np.array_equal(together[0], alone[0])


def test_counts_tokens_as_the_torch_embedder_does(onnx_question_encoder, real_embedder):
    texts = [*QUESTIONS, LONG_TEXT, "", "MQM-P's Khalid Maqbool Siddiqui (Bahadurabad) — 2018"]
    assert onnx_question_encoder.count_tokens(texts) == real_embedder.count_tokens(texts)


def test_the_export_is_cached_and_reused(onnx_question_encoder, onnx_cache, monkeypatch):
    folder = onnx_question_encoder.folder
    assert folder.parent == onnx_cache and folder.name.startswith(f"{DEFAULT_MODEL}-")
    assert not [p for p in onnx_cache.iterdir() if p.name.startswith(f".{folder.name}")]  # no temporary folder left
    mtime = (folder / onnx_encoder.MODEL_FILE).stat().st_mtime_ns

    def no_export(*args):
        raise AssertionError("exported again although the cache is intact")

    monkeypatch.setattr(onnx_encoder, "export_int8", no_export)
    again = onnx_encoder.OnnxQuestionEncoder(DEFAULT_MODEL, onnx_cache)
    assert again.folder == folder and (folder / onnx_encoder.MODEL_FILE).stat().st_mtime_ns == mtime
    assert np.array_equal(again.embed(QUESTIONS[:1]), onnx_question_encoder.embed(QUESTIONS[:1]))


def _damage_truncated(folder):
    model = folder / onnx_encoder.MODEL_FILE
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])


def _damage_flipped_byte(folder):
    model = folder / onnx_encoder.MODEL_FILE
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))


def _damage_no_meta(folder):
    (folder / onnx_encoder.META_FILE).unlink()  # a crash between the model and its description


def _damage_other_weights(folder):
    meta = folder / onnx_encoder.META_FILE
    meta.write_text(meta.read_text(encoding="utf-8").replace('"weights_sha256": "', '"weights_sha256": "0'), encoding="utf-8")


@pytest.mark.parametrize("damage", [_damage_truncated, _damage_flipped_byte, _damage_no_meta, _damage_other_weights])
def test_a_damaged_cache_is_exported_again(damage, onnx_question_encoder, real_embedder, tmp_path, monkeypatch):
    """Detection and replacement are what is tested; the "export" copies the session's real one
    (a second real export would cost another 10-25 s)."""
    good = onnx_question_encoder.folder
    cache = tmp_path / "cache"
    shutil.copytree(good, cache / good.name)
    damage(cache / good.name)
    exports = []

    def export_copy(model_path, target):
        exports.append(target)
        shutil.copy(good / onnx_encoder.MODEL_FILE, target / onnx_encoder.MODEL_FILE)

    monkeypatch.setattr(onnx_encoder, "export_int8", export_copy)
    encoder = onnx_encoder.OnnxQuestionEncoder(DEFAULT_MODEL, cache)
    assert len(exports) == 1 and exports[0].parent == cache
    assert encoder.folder == cache / good.name
    assert sorted(p.name for p in cache.iterdir()) == [good.name]  # the damaged copy and the temporary folder are gone
    digest = onnx_encoder.weights_digest(Path(resolve_model_path(DEFAULT_MODEL)))
    assert onnx_encoder.cached_model_is_intact(encoder.folder, digest)
    assert _cosines(encoder.embed(QUESTIONS[:2]), real_embedder.embed(QUESTIONS[:2])).min() >= 0.99


def test_a_model_without_mean_pooling_is_refused_with_a_way_out(tmp_path):
    model = tmp_path / "cls-model"
    model.mkdir()
    (model / "modules.json").write_text('[{"type": "sentence_transformers.models.Transformer"}, '
                                        '{"type": "sentence_transformers.models.Pooling"}]', encoding="utf-8")
    (model / "1_Pooling").mkdir()
    (model / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}', encoding="utf-8")
    (model / "sentence_bert_config.json").write_text('{"max_seq_length": 512}', encoding="utf-8")
    with pytest.raises(ConfigError, match="QUESTION_ENCODER=torch"):
        onnx_encoder.OnnxQuestionEncoder(str(model), tmp_path / "cache")


def test_the_setting_is_read_and_checked(tmp_path, monkeypatch):
    assert Settings.from_mapping({}).question_encoder == "onnx"
    assert Settings.from_mapping({"QUESTION_ENCODER": "torch"}).question_encoder == "torch"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert Settings.from_mapping({}).onnx_cache == tmp_path / "cache" / "newsbot" / "onnx"
    assert Settings.from_mapping({"ONNX_CACHE_DIR": str(tmp_path / "x")}).onnx_cache == tmp_path / "x"
    with pytest.raises(ConfigError, match="QUESTION_ENCODER must be one of torch, onnx"):
        Settings.from_mapping({"QUESTION_ENCODER": "tensorrt"})


def test_the_setting_switches_how_the_service_embeds_questions(seed_answerer, seed_settings, onnx_cache,
                                                               onnx_question_encoder, real_embedder):
    """By default (QUESTION_ENCODER=onnx) the bot's questions go through the ONNX encoder and
    answering never loads torch; QUESTION_ENCODER=torch embeds them with torch, as the chunks."""
    from bot.service import QuestionAnswerer

    question = QUESTIONS[0]
    onnx_vector = onnx_question_encoder.embed([question])[0]
    torch_vector = real_embedder.embed([question])[0]
    assert not np.allclose(onnx_vector, torch_vector, atol=1e-4)  # the two are told apart below

    with_onnx = QuestionAnswerer(seed_settings.with_overrides(onnx_cache_dir=onnx_cache)).load()
    assert with_onnx.embedder.question_encoder == "onnx"
    assert np.allclose(with_onnx.serving.retriever.embed_query(question), onnx_vector, atol=1e-6)
    answer = with_onnx.ask(question, 3)
    assert answer.found and "Khalid Maqbool Siddiqui" in " ".join(p.article.text[p.chunk_start:p.chunk_end] for p in answer.passages)
    assert not with_onnx.embedder.loaded  # the torch model was never loaded to answer

    with_torch = QuestionAnswerer(seed_settings.with_overrides(question_encoder="torch")).load()
    assert np.allclose(with_torch.serving.retriever.embed_query(question), torch_vector, atol=1e-5)
