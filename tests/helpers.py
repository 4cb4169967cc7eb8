"""Fakes and factories for tests. The fake embedder is for mechanics only; anything
about retrieval quality uses the real model (see conftest's ``real_embedder``)."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import numpy as np

from bot.config import Settings
from bot.embedding import normalize
from bot.faulttest import write_file

REPO = Path(__file__).resolve().parents[1]
SEED_CORPUS = REPO / "corpus"
SHARED = REPO.parent / "shared"
MULTIHOP_DIR = SHARED / "benchmarks" / "multihop-rag"
GOLD_FILE = REPO / "tests" / "gold" / "seed_questions.json"


class FakeEmbedder:
    """Deterministic bag-of-words hashing vectors; counts calls so tests can see what was embedded."""

    def __init__(self, dimension: int = 64, model_id: str = "fake-hash-64"):
        self.model_id = model_id
        self.dimension = dimension
        self.max_tokens = 256
        self.embedded_texts: list[str] = []

    def embed(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        self.embedded_texts.extend(texts)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
                out[row, int.from_bytes(digest[:4], "little") % self.dimension] += 1.0
        return normalize(out)

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(t.split()) for t in texts]


def make_settings(tmp_path: Path, corpus: Path | None = None, **values: str) -> Settings:
    """Settings from a plain dict, with corpus/index under tmp_path."""
    base = {"CORPUS_DIR": str(corpus or tmp_path / "corpus"), "INDEX_DIR": str(tmp_path / "index")}
    base.update(values)
    return Settings.from_mapping(base)


def copy_seed_corpus(target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for path in SEED_CORPUS.iterdir():
        if path.is_file():
            shutil.copy(path, target / path.name)
    return target


def write_article(folder: Path, name: str, title: str, body: str, **meta: str) -> Path:
    """A markdown article with front matter."""
    front = "\n".join([f"title: {title!r}"] + [f"{k}: {v!r}" for k, v in meta.items()])
    path = folder / name
    path.write_text(f"---\n{front}\n---\n\n{body}\n", encoding="utf-8")
    return path


write = write_file  # a file with the given text (UTF-8) or bytes, folders created


def small_corpus(tmp_path: Path, count: int = 3) -> Path:
    """``count`` dated articles of twelve short paragraphs each, for fast index mechanics."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(count):
        body = "\n\n".join(
            f"Paragraph {p} of article {i} talks about topic{i} and item{p}. It has a second sentence here."
            for p in range(12)
        )
        write_article(corpus, f"a{i}.md", f"Article {i}", body, source="Wire", date=f"2024-01-0{i + 1}")
    return corpus
