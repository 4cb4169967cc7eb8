"""Retrieval quality, measured: ``python -m bot eval seed|multihop|build``.

* ``seed``: our own gold questions on the seed corpus (tests/gold/seed_questions.json),
  asked through the ordinary ``QuestionAnswerer``: top-1 / top-3 accuracy and the
  not-found decisions. A question counts as answered at rank r when one of its evidence
  strings (whitespace-insensitive) lies inside the *retrieved span* of passage r
  (``Passage.chunk_start:chunk_end``, the span the shown quote is trimmed from).
* ``multihop``: MultiHop-RAG (Tang & Yang, COLM 2024, ODC-BY). The corpus is read through
  the ordinary ingestion path (``bench/multihop/corpus`` holds a symlink to the shared
  ``corpus_train.json``) into its own cached index (``bench/multihop/index``); the top 10
  passages of every non-null question are scored the way the paper's
  ``retrieval_evaluate.py`` does (Hits@4, Hits@10, MAP@10, MRR@10), plus fact recall@10,
  per question type, the null questions' "answered as found" rate and per-query latency
  of dense alone, lexical alone and fused retrieval.
* ``build``: index build throughput on the benchmark corpus (chunks/s, and the model's
  bare ``encode`` throughput on the same texts in the same run) and the time of an
  incremental rebuild after adding one article.

The metric functions are small and pure so they can be checked by hand.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bot.config import Settings
from bot.errors import BotError

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO_ROOT / "bench"
DEFAULT_BENCHMARK_DIR = REPO_ROOT.parent / "shared" / "benchmarks" / "multihop-rag"
SEED_GOLD = REPO_ROOT / "tests" / "gold" / "seed_questions.json"
TOP_N = 10  # passages scored per question, as in the paper

# Published figures (Tang & Yang 2024, Table 5: best retrieval, voyage-02 + bge-reranker-large,
# all 2,255 non-null queries) and our own throwaway-script baselines on the test split.
PUBLISHED = {"hits@4": 0.6625, "hits@10": 0.7467, "map@10": None, "mrr@10": 0.5860, "fact_recall@10": None}
REFERENCE_ROWS = [
    ("paper: commercial embedder + bge-reranker-large (published)", PUBLISHED),
    (
        "dense MiniLM alone, 256/25 chunks (test, issue baseline)",
        {"hits@4": 0.557, "hits@10": 0.722, "map@10": 0.186, "mrr@10": 0.400, "fact_recall@10": 0.395},
    ),
    (
        "BM25 alone with header (test, issue baseline)",
        {"hits@4": 0.750, "hits@10": 0.886, "map@10": 0.308, "mrr@10": 0.605, "fact_recall@10": 0.582},
    ),
]
METRICS = ("hits@4", "hits@10", "map@10", "mrr@10", "fact_recall@10")


# ------------------------------------------------------------------------------ metrics

_SPACE = re.compile(r"\s+")


def squash(text: str) -> str:
    """Whitespace removed: the paper's comparison ignores spacing and line breaks."""
    return _SPACE.sub("", text)


def fact_first_ranks(passages: list[str], facts: list[str], k: int = TOP_N) -> list[int | None]:
    """For each fact, the 1-based rank of the first of the top-k passages containing it."""
    squashed = [squash(p) for p in passages[:k]]
    ranks: list[int | None] = []
    for fact in facts:
        f = squash(fact)
        ranks.append(next((r for r, p in enumerate(squashed, 1) if f and f in p), None))
    return ranks


def evidence_flags(passages: list[str], facts: list[str], k: int = TOP_N) -> list[bool]:
    """Whether each of the top-k passages contains at least one fact."""
    gold = [squash(f) for f in facts if squash(f)]
    return [any(g in squash(p) for g in gold) for p in passages[:k]]


def hits_at(flags: list[bool], k: int) -> float:
    return 1.0 if any(flags[:k]) else 0.0


def mrr_at(flags: list[bool], k: int = TOP_N) -> float:
    for rank, flag in enumerate(flags[:k], 1):
        if flag:
            return 1.0 / rank
    return 0.0


def map_at(first_ranks: list[int | None], n_facts: int, k: int = TOP_N) -> float:
    """The authors' MAP@k: sum over ranks r<=k of (facts first seen at r)/r, over min(n_facts, k)."""
    if n_facts == 0:
        return 0.0
    return sum(1.0 / r for r in first_ranks if r is not None and r <= k) / min(n_facts, k)


def fact_recall_at(first_ranks: list[int | None], k: int = TOP_N) -> float:
    """Share of a question's facts found somewhere in the top k."""
    if not first_ranks:
        return 0.0
    return sum(1 for r in first_ranks if r is not None and r <= k) / len(first_ranks)


def score_question(passages: list[str], facts: list[str], k: int = TOP_N) -> dict[str, float]:
    flags = evidence_flags(passages, facts, k)
    ranks = fact_first_ranks(passages, facts, k)
    return {
        "hits@4": hits_at(flags, 4),
        "hits@10": hits_at(flags, 10),
        "map@10": map_at(ranks, len(facts), k),
        "mrr@10": mrr_at(flags, k),
        "fact_recall@10": fact_recall_at(ranks, k),
    }


def mean_metrics(rows: list[dict[str, float]]) -> dict[str, float]:
    if not rows:
        return {m: 0.0 for m in METRICS}
    return {m: sum(r[m] for r in rows) / len(rows) for m in METRICS}


def latency_summary(seconds: list[float]) -> dict[str, float]:
    if not seconds:
        return {}
    ms = sorted(s * 1000 for s in seconds)
    return {
        "mean_ms": round(statistics.fmean(ms), 2),
        "median_ms": round(statistics.median(ms), 2),
        "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 2),
    }


# ------------------------------------------------------------------------------ entry


def run_eval(args, settings: Settings) -> int:
    """Run one suite, show its report (table or JSON); exit 1 when a suite with a verdict fails."""
    run = _SUITES.get(args.suite)
    if run is None:
        raise BotError(f"unknown eval suite {args.suite!r}")
    report, formatter, passed = run(args, settings)
    _show(report, formatter, args)
    return 0 if passed else 1


def _option(args, name: str, default=None):
    return getattr(args, name, default)


# Each suite: (args, settings) -> (report, its formatter, whether the run passed). Suites with
# a heavy module import it when run.


def _seed_suite(args, settings: Settings):
    report = eval_seed(settings, corpus_dir=_option(args, "corpus"), index_dir=_option(args, "index"))
    return report, format_seed, report["passed"]


def _multihop_suite(args, settings: Settings):
    report = eval_multihop(settings, benchmark_dir=_option(args, "benchmark_dir"), split=_option(args, "split", "test") or "test",
                           limit=_option(args, "limit"), index_dir=_option(args, "index"))
    return report, format_multihop, True


def _conversation_suite(args, settings: Settings):
    gold = _option(args, "gold") or CONVERSATION_GOLD
    report = eval_conversation(settings, gold_file=gold, cost_rounds=0 if _option(args, "no_cost", False) else 3)
    return report, format_conversation, True


def _faults_suite(args, settings: Settings):
    from bot.faulttest import eval_faults, format_faults

    report = eval_faults(settings, delay=_option(args, "fault_delay", 20.0))
    return report, format_faults, report["passed"]


def _load_suite(args, settings: Settings):
    from bot.loadtest import eval_load, format_load

    report = eval_load(settings, users=_option(args, "users", 100), questions_per_user=_option(args, "questions", 5),
                       reply_timeout=_option(args, "reply_timeout", 60.0))
    return report, format_load, True


def _stories_suite(args, settings: Settings):
    from bot.evaluation_stories import eval_stories, format_stories

    return eval_stories(settings, benchmark_dir=_option(args, "benchmark_dir"), index_dir=_option(args, "index")), format_stories, True


def _update_suite(args, settings: Settings):
    from bot.evaluation_intake import eval_update, format_update

    return eval_update(settings, benchmark_dir=_option(args, "benchmark_dir")), format_update, True


def _intake_suite(args, settings: Settings):
    from bot.evaluation_intake import eval_intake, format_intake

    return eval_intake(settings, benchmark_dir=_option(args, "benchmark_dir"), limit=_option(args, "limit")), format_intake, True


def _encoder_suite(args, settings: Settings):
    from bot.evaluation_encoder import eval_encoder, format_encoder

    report = eval_encoder(settings, benchmark_dir=_option(args, "benchmark_dir"), split=_option(args, "split", "test") or "test",
                          limit=_option(args, "limit"))
    return report, format_encoder, True


def _build_suite(args, settings: Settings):
    return eval_build(settings, benchmark_dir=_option(args, "benchmark_dir"), limit=_option(args, "limit")), format_build, True


def _scale_suite(args, settings: Settings):
    from bot.scale_eval import DEFAULT_SIZES, eval_scale, format_scale

    sizes = tuple(int(s) for s in args.sizes.split(",")) if _option(args, "sizes") else DEFAULT_SIZES
    return eval_scale(settings, benchmark_paths(_option(args, "benchmark_dir")), BENCH_DIR / "multihop", sizes), format_scale, True


_SUITES = {
    "seed": _seed_suite, "multihop": _multihop_suite, "conversation": _conversation_suite, "faults": _faults_suite,
    "load": _load_suite, "stories": _stories_suite, "update": _update_suite, "intake": _intake_suite,
    "encoder": _encoder_suite, "build": _build_suite, "scale": _scale_suite,
}  # fmt: skip


def _show(report: dict, formatter, args) -> None:
    """A report as JSON (``--json``) or as its table."""
    print(json.dumps(report, indent=2, ensure_ascii=False) if getattr(args, "json", False) else formatter(report))


def _embedder(settings: Settings):
    """What the bot embeds with: chunks on torch, questions through QUESTION_ENCODER."""
    from bot.embedding import LazyEmbedder

    return LazyEmbedder.for_settings(settings)


# ------------------------------------------------------------------------------ seed


def _contains(haystack: str, needle: str) -> bool:
    return bool(squash(needle)) and squash(needle) in squash(haystack)


def passage_has_evidence(passage, evidence: list[str], article: str | None = None) -> bool:
    """Evidence inside the passage's retrieved span (and in the named article, if any)."""
    if article and passage.article.path != article and not passage.article.article_id.startswith(article):
        return False
    span = passage.article.text[passage.chunk_start : passage.chunk_end]
    return any(_contains(span, e) for e in evidence)


def eval_seed(settings: Settings, corpus_dir: Path | None = None, index_dir: Path | None = None, answerer=None, gold_file: Path = SEED_GOLD) -> dict:
    """Top-1/top-3 accuracy on the answerable gold questions and not-found decisions."""
    gold = json.loads(Path(gold_file).read_text(encoding="utf-8"))
    if answerer is None:
        from bot.service import QuestionAnswerer

        settings = settings.with_overrides(
            corpus_dir=corpus_dir or REPO_ROOT / "corpus", index_dir=index_dir or BENCH_DIR / "seed" / "index"
        )
        embedder = _embedder(settings)
        ensure_index(settings, embedder, progress=False)
        answerer = QuestionAnswerer(settings, embedder).load()
    answerable = []
    for item in gold["answerable"]:
        answer = answerer.ask(item["question"], 3)
        flags = [passage_has_evidence(p, item["evidence"], item.get("article")) for p in answer.passages[:3]]
        answerable.append(
            {
                "question": item["question"],
                "found": answer.found,
                "rank": next((i + 1 for i, f in enumerate(flags) if f), None),
                "top1": bool(flags[:1] and flags[0]),
                "top3": any(flags),
            }
        )
    out_of_corpus = []
    for question in gold["out_of_corpus"]:
        answer = answerer.ask(question, 3)
        out_of_corpus.append({"question": question, "found": answer.found})
    n = max(1, len(answerable))
    report = {
        "answerable": len(answerable),
        "top1_accuracy": sum(a["top1"] for a in answerable) / n,
        "top3_accuracy": sum(a["top3"] for a in answerable) / n,
        "answerable_found": sum(a["found"] for a in answerable) / n,
        "out_of_corpus": len(out_of_corpus),
        "out_of_corpus_not_found": sum(not o["found"] for o in out_of_corpus) / max(1, len(out_of_corpus)),
        "found_threshold": answerer.composer.params.found_threshold,
        "items": answerable,
        "out_of_corpus_items": out_of_corpus,
    }
    report["passed"] = (
        all(a["top3"] and a["found"] for a in answerable) and not any(o["found"] for o in out_of_corpus)
    )
    return report


def format_seed(report: dict) -> str:
    lines = [
        (f"Seed gold set: {report['answerable']} answerable, {report['out_of_corpus']} out-of-corpus questions "
        f"(found threshold {report['found_threshold']:.2f})"),
        f"  top-1 accuracy           {report['top1_accuracy']:.3f}",
        f"  top-3 accuracy           {report['top3_accuracy']:.3f}",
        f"  answerable found         {report['answerable_found']:.3f}",
        f"  out-of-corpus not found  {report['out_of_corpus_not_found']:.3f}",
    ]
    for item in report["items"]:
        if not (item["top3"] and item["found"]):
            lines.append(f"  MISS  {item['question']!r}: rank {item['rank']}, found={item['found']}")
    for item in report["out_of_corpus_items"]:
        if item["found"]:
            lines.append(f"  FOUND (should not be)  {item['question']!r}")
    lines.append("PASS" if report["passed"] else "FAIL")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ multihop


def benchmark_paths(benchmark_dir: Path | None) -> Path:
    folder = Path(benchmark_dir) if benchmark_dir else DEFAULT_BENCHMARK_DIR
    for name in ("corpus_train.json", "queries_train.json", "queries_dev.json"):
        if not (folder / name).is_file():
            raise BotError(
                f"MultiHop-RAG file {folder / name} not found; pass --benchmark-dir pointing to the folder "
                "that holds corpus_train.json, queries_train.json and queries_dev.json"
            )
    return folder


def prepare_corpus(benchmark_dir: Path, bench_root: Path) -> Path:
    """``bench_root/corpus`` holding the benchmark's corpus file.

    A local, git-ignored cache (the built index holds the same text anyway): the corpus
    reader follows no link out of its folder, so a symlink to ../shared would be refused.
    Copied again whenever the source's size or time changes.
    """
    corpus = bench_root / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    cached = corpus / "corpus_train.json"
    source = benchmark_dir / "corpus_train.json"
    if cached.is_symlink():
        cached.unlink()
    stat = source.stat()
    if not (cached.is_file() and cached.stat().st_size == stat.st_size and cached.stat().st_mtime == stat.st_mtime):
        shutil.copy2(source, cached)
    return corpus


def load_questions(benchmark_dir: Path, split: str) -> tuple[list[dict], list[dict]]:
    """(non-null questions of the split, null questions) with ``qid`` set."""
    every = json.loads((benchmark_dir / "queries_train.json").read_text(encoding="utf-8"))
    for qid, item in enumerate(every):
        item["qid"] = qid
    dev_ids = {item["qid"] for item in json.loads((benchmark_dir / "queries_dev.json").read_text(encoding="utf-8"))}
    nulls = [q for q in every if q["question_type"] == "null_query"]
    answerable = [q for q in every if q["question_type"] != "null_query"]
    if split == "dev":
        chosen = [q for q in answerable if q["qid"] in dev_ids]
    elif split == "test":
        chosen = [q for q in answerable if q["qid"] not in dev_ids]
    elif split == "all":
        chosen = answerable
    else:
        raise BotError(f"unknown split {split!r} (dev, test or all)")
    return chosen, nulls


def ensure_index(settings: Settings, embedder, progress: bool | None = None) -> dict | None:
    """Build (incrementally) when stale; returns the build report, or None when cached."""
    from bot.indexing import build_index, index_is_stale

    if not index_is_stale(settings, embedder.model_id):
        return None
    return build_index(settings, embedder, progress=progress).to_dict()


def retrieve_passages(retriever, articles, question: str, k: int = TOP_N) -> list[str]:
    """The texts of the top-k passages (the retrieved spans a reader is shown quotes from)."""
    return [articles[h.article_id].text[h.start : h.end] for h in retriever.search(question, k)]


def eval_multihop(
    settings: Settings,
    benchmark_dir: Path | None = None,
    split: str = "test",
    limit: int | None = None,
    index_dir: Path | None = None,
    bench_root: Path | None = None,
    embedder=None,
    retrieval_params=None,
    null_found: bool = True,
    latency: bool = True,
) -> dict:
    from bot.indexing import index_identity
    from bot.retrieval import Retriever
    from bot.service import QuestionAnswerer
    from bot.store import load_index

    folder = benchmark_paths(benchmark_dir)
    bench_root = bench_root or BENCH_DIR / "multihop"
    corpus = prepare_corpus(folder, bench_root)
    settings = settings.with_overrides(corpus_dir=corpus, index_dir=index_dir or bench_root / "index")
    embedder = embedder or _embedder(settings)
    started = time.perf_counter()
    build = ensure_index(settings, embedder)
    index = load_index(settings.index_dir, index_identity(settings, embedder))
    retriever = Retriever(index, embedder, retrieval_params)
    url_to_article = {a.url: a.article_id for a in index.articles.values() if a.url}
    questions, nulls = load_questions(folder, split)
    if limit:
        questions, nulls = questions[:limit], nulls[:limit]

    rows: list[dict] = []
    per_type: dict[str, list[dict]] = {}
    over_cap = 0
    max_tokens_seen = 0
    t_dense: list[float] = []
    t_lex: list[float] = []
    t_fused: list[float] = []
    for q in questions:
        facts = [e["fact"] for e in q["evidence_list"]]
        t0 = time.perf_counter()
        texts = retrieve_passages(retriever, index.articles, q["query"])
        t_fused.append(time.perf_counter() - t0)
        if latency:
            t_dense.append(_time(retriever.dense_only, q["query"], TOP_N))
            t_lex.append(_time(retriever.lexical_only, q["query"], TOP_N))
        if texts:  # every passage, as shown: merged and grown ones must keep to the cap too
            counts = embedder.count_tokens(texts)
            over_cap += sum(c > retriever.params.max_passage_tokens for c in counts)
            max_tokens_seen = max(max_tokens_seen, *counts)
        row = score_question(texts, facts)
        row["type"] = q["question_type"]
        row["qid"] = q["qid"]
        row["gold_articles_in_corpus"] = sum(1 for e in q["evidence_list"] if e["url"] in url_to_article)
        rows.append(row)
        per_type.setdefault(q["question_type"], []).append(row)

    null_report = {}
    if null_found and nulls:
        # Through the bot's own service call, so the rate is the bot's.
        answerer = QuestionAnswerer(settings, embedder, retrieval_params).load()
        found_null = _found_rate(answerer, [q["query"] for q in nulls], settings.top_k)
        found_answerable = _found_rate(answerer, [q["query"] for q in questions[:300]], settings.top_k)
        null_report = {
            "null_questions": len(nulls),
            "null_answered_as_found": round(found_null, 4),
            "answerable_found_sample": min(300, len(questions)),
            "answerable_answered_as_found": round(found_answerable, 4),
            "found_threshold": settings.found_threshold,
            "top_k": settings.top_k,
        }
    overall = mean_metrics(rows)
    return {
        "benchmark": "MultiHop-RAG (Tang & Yang, COLM 2024; ODC-BY)",
        "split": split,
        "questions": len(rows),
        "top_n": TOP_N,
        "metrics": {m: round(v, 4) for m, v in overall.items()},
        "per_type": {
            t: {"questions": len(r), **{m: round(v, 4) for m, v in mean_metrics(r).items()}} for t, r in sorted(per_type.items())
        },
        "published": REFERENCE_ROWS,
        "passages": {"max_word_pieces": max_tokens_seen, "over_cap": over_cap, "cap": retriever.params.max_passage_tokens},
        "latency": {
            "dense": latency_summary(t_dense),
            "lexical": latency_summary(t_lex),
            "fused": latency_summary(t_fused),
        },
        "not_found": null_report,
        "index": {
            "path": str(index.path),
            "chunks": len(index.chunks),
            "articles": len(index.articles),
            "chunking": index.manifest.get("chunking"),
            "built_now": build,
        },
        "retrieval_params": vars(retriever.params),
        "seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
    }


def _time(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def _found_rate(answerer, questions: list[str], k: int) -> float:
    if not questions:
        return 0.0
    return sum(answerer.ask(question, k).found for question in questions) / len(questions)


def _fmt(value) -> str:
    return "  n/a " if value is None else f"{value:.4f}"


def format_multihop(report: dict) -> str:
    head = f"{'pipeline':62} " + " ".join(f"{m:>14}" for m in METRICS)
    lines = [
        f"MultiHop-RAG retrieval, split={report['split']}, {report['questions']} non-null questions, top {report['top_n']}",
        head,
        "-" * len(head),
    ]
    for name, metrics in report["published"]:
        lines.append(f"{name[:62]:62} " + " ".join(f"{_fmt(metrics[m]):>14}" for m in METRICS))
    lines.append(f"{'this bot (MiniLM + BM25, fused)':62} " + " ".join(f"{_fmt(report['metrics'][m]):>14}" for m in METRICS))
    lines.append("")
    lines.append("per question type:")
    for qtype, metrics in report["per_type"].items():
        label = f"{qtype} ({metrics['questions']})"
        lines.append(f"  {label:60} " + " ".join(f"{_fmt(metrics[m]):>14}" for m in METRICS))
    passages = report["passages"]
    lines.append("")
    lines.append(
        f"passages: longest {passages['max_word_pieces']} word pieces (cap {passages['cap']}), {passages['over_cap']} over the cap"
    )
    lat = report["latency"]
    if lat["fused"]:
        lines.append("latency per query (ms, mean / median / p95):")
        for name in ("dense", "lexical", "fused"):
            if lat[name]:
                lines.append(f"  {name:8} {lat[name]['mean_ms']:7.1f} {lat[name]['median_ms']:7.1f} {lat[name]['p95_ms']:7.1f}")
    nf = report["not_found"]
    if nf:
        lines.append(
            f"not-found decision (threshold {nf['found_threshold']:.2f}, top {nf['top_k']}): {nf['null_answered_as_found']:.1%} of "
            f"{nf['null_questions']} null questions answered as found; {nf['answerable_answered_as_found']:.1%} of "
            f"{nf['answerable_found_sample']} answerable ones"
        )
    idx = report["index"]
    lines.append(f"index: {idx['articles']} articles, {idx['chunks']} chunks, {idx['chunking']} ({report['seconds']}s in all)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ build throughput


def eval_build(settings: Settings, benchmark_dir: Path | None = None, work_dir: Path | None = None, limit: int | None = None) -> dict:
    """Full build of the benchmark corpus in a scratch folder, bare encode of the same texts,
    then the incremental rebuild after adding one article. ``limit``: only the first N
    articles (a temporary subset file in the scratch folder, removed afterwards)."""
    from bot.indexing import _embedded_text, build_index
    from bot.store import load_index

    folder = benchmark_paths(benchmark_dir)
    scratch = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="newsbot-build-"))
    try:
        if limit:
            corpus = scratch / "corpus"
            corpus.mkdir(parents=True, exist_ok=True)
            subset = json.loads((folder / "corpus_train.json").read_text(encoding="utf-8"))[:limit]
            (corpus / "corpus_train.json").write_text(json.dumps(subset), encoding="utf-8")
        else:
            corpus = prepare_corpus(folder, scratch)
        run = settings.with_overrides(corpus_dir=corpus, index_dir=scratch / "index")
        embedder = _embedder(run)
        full = build_index(run, embedder, full=True, progress=False)
        index = load_index(run.index_dir)
        texts = [_embedded_text(index.articles[c.article_id], c, run.embed_header) for c in index.chunks]
        t0 = time.perf_counter()
        embedder.embed(texts)
        bare = time.perf_counter() - t0
        (corpus / "added-article.md").write_text(
            "---\ntitle: 'A new article for the incremental rebuild'\nsource: 'Bench Wire'\ndate: '2023-12-31'\n---\n\n"
            + " ".join(f"Sentence number {i} of the added article reports on the benchmark." for i in range(60))
            + "\n",
            encoding="utf-8",
        )
        incremental = build_index(run, embedder, progress=False)
    finally:
        if work_dir is None:
            shutil.rmtree(scratch, ignore_errors=True)
    return {
        "articles": len(index.articles),
        "chunks": full.chunks_total,
        "full_build_seconds": round(full.seconds, 2),
        "full_build_embed_seconds": round(full.embed_seconds, 2),
        "build_chunks_per_second": round(full.chunks_total / full.seconds, 1),
        "bare_encode_seconds": round(bare, 2),
        "bare_encode_chunks_per_second": round(len(texts) / bare, 1),
        "build_over_bare_ratio": round((len(texts) / full.seconds) / (len(texts) / bare), 3),
        "incremental_seconds": round(incremental.seconds, 2),
        "incremental_chunks_embedded": incremental.chunks_embedded,
        "incremental_chunks_reused": incremental.chunks_reused,
    }


def format_build(report: dict) -> str:
    return "\n".join(
        [
            f"Index build on MultiHop-RAG: {report['articles']} articles, {report['chunks']} chunks",
            (f"  full build      {report['full_build_seconds']:8.1f}s  {report['build_chunks_per_second']:8.1f} chunks/s "
            f"(embedding {report['full_build_embed_seconds']:.1f}s)"),
            f"  bare encode     {report['bare_encode_seconds']:8.1f}s  {report['bare_encode_chunks_per_second']:8.1f} chunks/s",
            f"  build / bare throughput ratio  {report['build_over_bare_ratio']:.3f}",
            (f"  incremental rebuild after adding one article: {report['incremental_seconds']:.2f}s "
            f"({report['incremental_chunks_embedded']} chunks embedded, {report['incremental_chunks_reused']} reused)"),
        ]
    )


# ------------------------------------------------------------------------------ conversation

CONVERSATION_GOLD = REPO_ROOT / "tests" / "gold" / "conversation.json"
MESSAGES_GOLD = REPO_ROOT / "tests" / "gold" / "messages.json"
# Targets of the answers issue: lead right overall and in every answer category, small talk,
# Roman Urdu within 5 points of English, Urdu script, an answer's cost against the bare
# query embedding, and a typical reply's length.
CONVERSATION_TARGETS = {"overall": 0.90, "category": 0.85, "small_talk": 1.0, "roman_gap": 0.05, "urdu": 0.75, "cost_ratio": 1.5, "median_chars": 1200}
_ANSWER_EXPECTATIONS = ("answer", "coverage")


def _lead_matches(lead: str | None, wanted: list[str]) -> bool:
    return bool(lead) and any(_contains(lead, w) for w in wanted)


def judge_turn(turn: dict, reply) -> bool:
    """Whether the reply is what the gold turn expects (see tests/gold/conversation.json)."""
    expect = turn["expect"]
    answer = reply.answer
    if expect in ("small_talk", "command"):
        return reply.kind == expect
    if expect == "not_found":
        return reply.kind == "not_understood" or (reply.kind == "answer" and not answer.found)
    if reply.kind != "answer" or not answer.found:
        return False
    if expect == "coverage" and not answer.coverage_note:
        return False
    if expect == "answer" and answer.coverage_note:
        return False  # a false "my articles are too old" is a wrong first sentence
    return not turn.get("lead") or _lead_matches(answer.best_sentence, turn["lead"])


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))] if ordered else 0.0


def eval_conversation(
    settings: Settings, answerer=None, gold_file: Path = CONVERSATION_GOLD, messages_file: Path = MESSAGES_GOLD, cost_rounds: int = 3
) -> dict:
    """Every gold dialogue through ``QuestionAnswerer.reply``, the call the bot and console make.
    ``cost_rounds``: rounds of the answer-cost benchmark (0: skip it)."""
    from bot.dialogue import Conversation, classify
    from bot.telegram_html import parsed_length, render_reply

    if answerer is None:
        answerer = _seed_answerer(settings)
    gold = json.loads(Path(gold_file).read_text(encoding="utf-8"))
    rows = []
    for dialogue in gold["dialogues"]:
        conversation = Conversation()
        for turn in dialogue["turns"]:
            started = time.perf_counter()
            reply = answerer.reply(conversation, turn["say"])
            seconds = time.perf_counter() - started
            answer = reply.answer
            chars = sum(parsed_length(m) for m in render_reply(reply)) if reply.kind == "answer" and answer.found else None
            rows.append({
                "dialogue": dialogue["id"], "say": turn["say"], "category": turn["category"], "lang": turn["lang"],
                "expect": turn["expect"], "ok": judge_turn(turn, reply), "kind": reply.kind,
                "found": bool(answer and answer.found), "lead": answer.best_sentence if answer else None,
                "coverage_note": bool(answer and answer.coverage_note), "chars": chars,
                "read_as": answer.context_note if answer else None,
                "confidence": answer.confidence if answer else None,
                "seconds": seconds if reply.kind == "answer" else None,
            })  # fmt: skip
    messages = json.loads(Path(messages_file).read_text(encoding="utf-8"))["messages"]
    classified = [{"text": m["text"], "kind": m["kind"], "got": classify(m["text"], has_context=True).kind} for m in messages]

    def share(selected: list[dict]) -> float | None:
        return sum(r["ok"] for r in selected) / len(selected) if selected else None

    answer_rows = [r for r in rows if r["expect"] in _ANSWER_EXPECTATIONS]
    categories = sorted({r["category"] for r in rows})
    report = {
        "dialogues": len(gold["dialogues"]),
        "gold_file": _shown_path(Path(gold_file)),
        "turns": len(rows),
        "by_category": {c: {"n": len([r for r in rows if r["category"] == c]), "right": share([r for r in rows if r["category"] == c])} for c in categories},
        "by_language": {lang: {"n": len([r for r in answer_rows if r["lang"] == lang]), "right": share([r for r in answer_rows if r["lang"] == lang])}
                        for lang in ("en", "roman_ur", "ur")},
        "lead_right": share(answer_rows),
        "not_found_right": share([r for r in rows if r["expect"] == "not_found"]),
        "small_talk_right": share([r for r in rows if r["expect"] == "small_talk"]),
        "command_right": share([r for r in rows if r["expect"] == "command"]),
        "classifier_accuracy": sum(c["kind"] == c["got"] for c in classified) / max(1, len(classified)),
        "classifier_messages": len(classified),
        "classifier_misses": [c for c in classified if c["kind"] != c["got"]],
        "misses": [r for r in rows if not r["ok"]],
        "rows": rows,
    }  # fmt: skip
    lengths = [r["chars"] for r in rows if r["chars"] is not None]
    report["reply_chars"] = {"median": statistics.median(lengths) if lengths else None, "p90": _percentile(lengths, 0.9)}
    english = [r["say"] for r in rows if r["expect"] in _ANSWER_EXPECTATIONS and r["lang"] == "en"]
    report.update(_answer_cost(answerer, english, cost_rounds))
    return report


def _seed_answerer(settings: Settings):
    from bot.service import QuestionAnswerer

    settings = settings.with_overrides(corpus_dir=REPO_ROOT / "corpus", index_dir=BENCH_DIR / "seed" / "index")
    embedder = _embedder(settings)
    ensure_index(settings, embedder, progress=False)
    return QuestionAnswerer(settings, embedder).load()


def _answer_cost(answerer, questions: list[str], rounds: int) -> dict:
    """A whole answer against the bare query embedding, interleaved in one run (the machine is noisy)."""
    from bot.dialogue import Conversation
    from bot.embedding import embed_questions

    answer_s, embed_s = [], []
    for _ in range(rounds):
        for question in questions:
            embed_s.append(_time(embed_questions, answerer.embedder, [question]))
            answer_s.append(_time(answerer.reply, Conversation(), question))
    if not answer_s:
        return {"answer_ms": None, "embed_ms": None, "cost_ratio": None}
    median_answer, median_embed = statistics.median(answer_s), statistics.median(embed_s)
    return {
        "answer_ms": {"median": round(1000 * median_answer, 1), "p95": round(1000 * _percentile(answer_s, 0.95), 1)},
        "embed_ms": {"median": round(1000 * median_embed, 1), "p95": round(1000 * _percentile(embed_s, 0.95), 1)},
        "cost_ratio": round(median_answer / median_embed, 2) if median_embed else None,
    }


def format_conversation(report: dict) -> str:
    t = CONVERSATION_TARGETS
    lines = [f"Conversation gold set: {report['dialogues']} dialogues, {report['turns']} turns ({report['gold_file']})", ""]
    lines.append(f"  {'category':14} {'turns':>5} {'right':>7}  target")
    answer_categories = {"who", "when", "where", "why", "how_many", "what_is", "which", "follow_up", "misspelling", "coverage", "not_found"}
    for category, row in report["by_category"].items():
        target = t["small_talk"] if category == "small_talk" else t["category"] if category in answer_categories else None
        mark = "" if target is None or row["right"] >= target else "  MISSED"
        lines.append(f"  {category:14} {row['n']:>5} {row['right']:>7.1%}  {'' if target is None else f'≥ {target:.0%}'}{mark}")
    lines.append("")
    en = report["by_language"]["en"]["right"]
    for lang, row in report["by_language"].items():
        target = {"en": "", "roman_ur": f"within {t['roman_gap']:.0%} of English", "ur": f"≥ {t['urdu']:.0%}"}[lang]
        ok = lang == "en" or (lang == "roman_ur" and row["right"] >= en - t["roman_gap"]) or (lang == "ur" and row["right"] >= t["urdu"])
        lines.append(f"  answers in {lang:9} {row['n']:>4} {row['right']:>7.1%}  {target}{'' if ok else '  MISSED'}")
    lines.append("")
    lines.append(f"  lead right, all answer turns   {report['lead_right']:.1%}  (target ≥ {t['overall']:.0%})")
    lines.append(f"  not found right                {report['not_found_right']:.1%}")
    lines.append(f"  small talk handled             {report['small_talk_right']:.1%}  (target {t['small_talk']:.0%})")
    lines.append(f"  commands recognised            {report['command_right']:.1%}")
    lines.append(f"  message classifier             {report['classifier_accuracy']:.1%} of {report['classifier_messages']} labelled messages")
    chars = report["reply_chars"]
    lines.append(f"  reply length (Telegram chars)  median {chars['median']:.0f}, p90 {chars['p90']:.0f}  (target median < {t['median_chars']})")
    if report["answer_ms"]:
        lines.append(
            f"  answer cost                    {report['answer_ms']['median']} ms median / {report['answer_ms']['p95']} ms p95, "
            f"bare query embedding {report['embed_ms']['median']} ms: {report['cost_ratio']}× (target ≤ {t['cost_ratio']}×)"
        )
    if report["misses"]:
        lines.append("\nMisses:")
        for miss in report["misses"]:
            lines.append(f"  [{miss['category']}/{miss['lang']}] {miss['say']!r} -> {miss['kind']}, found={miss['found']}, "
                         f"note={miss['coverage_note']} conf={miss['confidence']}: {(miss['lead'] or '')[:110]!r}")
            if miss.get("read_as"):
                lines.append(f"      {miss['read_as']}")
    if report["classifier_misses"]:
        lines.append("\nClassifier misses:")
        for miss in report["classifier_misses"]:
            lines.append(f"  {miss['text']!r}: labelled {miss['kind']}, classified {miss['got']}")
    return "\n".join(lines)


def _shown_path(path: Path) -> str:
    """A gold file as the reader would type it: relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
