"""``python -m bot eval encoder``: the ONNX int8 question encoder against torch, in one run.

On the same MultiHop-RAG index (chunks embedded by torch, as always) and the same seed
index, questions are encoded once by the torch model and once by the ONNX Runtime int8
encoder (``bot/onnx_encoder.py``):

* latency per question, one question per call as the bot embeds them, the two encoders
  alternating so both meet the same machine load (p50, p95, and torch p50 / onnx p50), and
  the same for chunk texts (what an index build would embed) for comparison;
* cosine of each question's two vectors, and the overlap of their dense top 10;
* MultiHop-RAG Hits@10 / MRR@10 (``eval multihop``'s scoring) and the seed gold set
  (``eval seed``) through the ordinary retriever and service, with each encoder.

The verdict: the ONNX encoder may become the default only if every quality number is
within ``TOLERANCE`` of torch's.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from bot.config import Settings

TOLERANCE = 0.005  # the largest drop in Hits@10, MRR@10 or seed top-1 the issue accepts
LATENCY_QUESTIONS = 200  # questions timed per encoder (alternating), after WARMUP each
LATENCY_CHUNKS = 50  # chunk texts timed per encoder
WARMUP = 5
MULTIHOP_METRICS = ("hits@4", "hits@10", "map@10", "mrr@10", "fact_recall@10")
SEED_METRICS = ("top1_accuracy", "top3_accuracy", "answerable_found", "out_of_corpus_not_found")
JUDGED = (("multihop", "hits@10"), ("multihop", "mrr@10"), ("seed", "top1_accuracy"))


class QuestionsThrough:
    """The torch embedder for chunks and token counts, another encoder for questions."""

    def __init__(self, chunks, questions):
        self.chunks, self.questions = chunks, questions
        self.model_id, self.dimension, self.max_tokens = chunks.model_id, chunks.dimension, chunks.max_tokens

    def embed(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        return self.chunks.embed(texts, show_progress=show_progress)

    def embed_questions(self, texts: list[str]) -> np.ndarray:
        return self.questions.embed(texts)

    def count_tokens(self, texts: list[str]) -> list[int]:
        return self.chunks.count_tokens(texts)


def _latency(encoders: dict, texts: list[str]) -> dict:
    """Milliseconds per single-text call, the encoders alternating text by text."""
    for text in texts[:WARMUP]:
        for encoder in encoders.values():
            encoder.embed([text])
    seconds: dict[str, list[float]] = {name: [] for name in encoders}
    for text in texts:
        for name, encoder in encoders.items():
            started = time.perf_counter()
            encoder.embed([text])
            seconds[name].append(time.perf_counter() - started)
    out = {}
    for name, values in seconds.items():
        ms = sorted(v * 1000 for v in values)
        out[name] = {"p50_ms": round(statistics.median(ms), 2), "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 2)}
    out["torch_over_onnx_p50"] = round(out["torch"]["p50_ms"] / out["onnx"]["p50_ms"], 2)
    out["texts"] = len(texts)
    return out


def eval_encoder(settings: Settings, benchmark_dir: Path | None = None, split: str = "test", limit: int | None = None) -> dict:
    from bot.evaluation import (
        BENCH_DIR,
        REPO_ROOT,
        benchmark_paths,
        ensure_index,
        eval_multihop,
        eval_seed,
        load_questions,
        prepare_corpus,
    )
    from bot.embedding import load_embedder
    from bot.indexing import index_identity
    from bot.onnx_encoder import OnnxQuestionEncoder
    from bot.service import QuestionAnswerer
    from bot.store import load_index

    started = time.perf_counter()
    torch_embedder = load_embedder(settings.embedding_model, settings.embedding_batch_size)
    t0 = time.perf_counter()
    onnx_encoder = OnnxQuestionEncoder(settings.embedding_model, settings.onnx_cache)
    onnx_load_s = time.perf_counter() - t0
    encoders = {"torch": torch_embedder, "onnx": onnx_encoder}
    with_onnx = QuestionsThrough(torch_embedder, onnx_encoder)

    folder = benchmark_paths(benchmark_dir)
    bench_root = BENCH_DIR / "multihop"
    multihop_settings = settings.with_overrides(corpus_dir=prepare_corpus(folder, bench_root), index_dir=bench_root / "index")
    ensure_index(multihop_settings, torch_embedder)
    index = load_index(multihop_settings.index_dir, index_identity(multihop_settings, torch_embedder))
    questions = [q["query"] for q in load_questions(folder, split)[0]]
    if limit:
        questions = questions[:limit]

    # Vectors: torch as the bot embeds a question (one per call), onnx likewise.
    vectors = {name: np.vstack([e.embed([q]) for q in questions]) for name, e in encoders.items()}
    cosines = np.sum(vectors["torch"] * vectors["onnx"], axis=1)
    _, top_torch = index.search(vectors["torch"], 10)
    _, top_onnx = index.search(vectors["onnx"], 10)
    overlap = [len(set(a) & set(b)) / 10 for a, b in zip(top_torch.tolist(), top_onnx.tolist())]

    chunk_rows = np.linspace(0, len(index.chunks) - 1, LATENCY_CHUNKS).astype(int)
    latency = {
        "questions": _latency(encoders, questions[:LATENCY_QUESTIONS]),
        "chunks": _latency(encoders, [index.chunks[int(i)].text for i in chunk_rows]),
    }

    multihop = {}
    for name, embedder in (("torch", torch_embedder), ("onnx", with_onnx)):
        report = eval_multihop(settings, benchmark_dir=benchmark_dir, split=split, limit=limit, embedder=embedder,
                               null_found=False, latency=False)
        multihop[name] = report["metrics"]

    seed_settings = settings.with_overrides(corpus_dir=REPO_ROOT / "corpus", index_dir=BENCH_DIR / "seed" / "index")
    ensure_index(seed_settings, torch_embedder, progress=False)
    seed = {}
    for name, embedder in (("torch", torch_embedder), ("onnx", with_onnx)):
        report = eval_seed(seed_settings, answerer=QuestionAnswerer(seed_settings, embedder).load())
        seed[name] = {m: round(report[m], 4) for m in SEED_METRICS}

    quality = {"multihop": multihop, "seed": seed}
    deltas = {f"{suite} {metric}": round(quality[suite]["onnx"][metric] - quality[suite]["torch"][metric], 4)
              for suite, metric in JUDGED}
    return {
        "model": settings.embedding_model,
        "onnx_model": str(onnx_encoder.folder),
        "onnx_load_seconds": round(onnx_load_s, 2),
        "split": split,
        "questions": len(questions),
        "cosine": {"mean": round(float(cosines.mean()), 4), "min": round(float(cosines.min()), 4),
                   "p05": round(float(np.percentile(cosines, 5)), 4)},
        "dense_top10_overlap": round(statistics.fmean(overlap), 4),
        "latency": latency,
        "multihop": multihop,
        "seed": seed,
        "deltas": deltas,
        "tolerance": TOLERANCE,
        "within_tolerance": all(d >= -TOLERANCE for d in deltas.values()),
        "seconds": round(time.perf_counter() - started, 1),
    }


def format_encoder(report: dict) -> str:
    lat = report["latency"]
    lines = [
        f"Question encoder: torch vs ONNX Runtime int8 ({report['model']}; {report['questions']} MultiHop-RAG "
        f"{report['split']} questions; ONNX model {report['onnx_model']}, loaded in {report['onnx_load_seconds']} s)",
        "",
        "| latency per call | torch p50 / p95 | onnx p50 / p95 | torch / onnx (p50) |",
        "|---|---|---|---|",
    ]
    for kind in ("questions", "chunks"):
        row = lat[kind]
        lines.append(f"| {kind} ({row['texts']}) | {row['torch']['p50_ms']} / {row['torch']['p95_ms']} ms | "
                     f"{row['onnx']['p50_ms']} / {row['onnx']['p95_ms']} ms | {row['torch_over_onnx_p50']}x |")
    cos = report["cosine"]
    lines += [
        "",
        f"cosine onnx vs torch: mean {cos['mean']}, 5th percentile {cos['p05']}, min {cos['min']}; "
        f"dense top-10 overlap {report['dense_top10_overlap']}",
        "",
        "| quality | torch | onnx | onnx - torch |",
        "|---|---|---|---|",
    ]
    for suite, metrics in (("multihop", MULTIHOP_METRICS), ("seed", SEED_METRICS)):
        for metric in metrics:
            torch_value, onnx_value = report[suite]["torch"][metric], report[suite]["onnx"][metric]
            lines.append(f"| {suite} {metric} | {torch_value:.4f} | {onnx_value:.4f} | {onnx_value - torch_value:+.4f} |")
    verdict = "within" if report["within_tolerance"] else "NOT within"
    lines += ["", f"Hits@10, MRR@10 and seed top-1 {verdict} {report['tolerance']} of torch "
              f"({', '.join(f'{k} {v:+.4f}' for k, v in report['deltas'].items())}); {report['seconds']} s"]
    return "\n".join(lines)
