"""The command line as a user runs it: real processes, the real model, real FAISS."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO, copy_seed_corpus


def run_bot(*args: str, cwd, stdin: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), **(env or {})}
    environment.pop("TELEGRAM_BOT_TOKEN", None)
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=cwd, input=stdin, capture_output=True, text=True, env=environment, timeout=300
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder laid out like the repo: corpus/ with the seed articles, index/ built by the CLI."""
    root = tmp_path_factory.mktemp("cli")
    copy_seed_corpus(root / "corpus")
    result = run_bot("index", "--json", cwd=root)
    assert result.returncode == 0, result.stderr
    return root, json.loads(result.stdout)


def _articles(root) -> dict:
    """The stored articles as the index files hold them (each text from its segment's texts.bin)."""
    articles = {}
    for folder in sorted((root / "index" / "current").glob("segments/*")):
        texts = (folder / "texts.bin").read_bytes()
        for article in map(json.loads, (folder / "articles.jsonl").read_text().splitlines()):
            offset, length = article.pop("text_at")
            articles[article["article_id"]] = {**article, "text": texts[offset : offset + length].decode("utf-8")}
    return articles


def test_index_json_reports_what_it_did(workdir):
    root, report = workdir
    for key in ("articles_added", "articles_changed", "articles_removed", "articles_unchanged", "chunks_embedded", "chunks_total", "seconds"):
        assert key in report
    assert report["articles_added"] == 2 and report["chunks_embedded"] == report["chunks_total"] > 10


def test_ask_json_gives_cited_passages_that_quote_the_corpus(workdir):
    root, _ = workdir
    result = run_bot("ask", "--json", "Who leads the Bahadurabad group?", "What is the weather in Oslo today?", cwd=root)
    assert result.returncode == 0, result.stderr
    first, second = [json.loads(line) for line in result.stdout.splitlines()]
    assert first["question"] == "Who leads the Bahadurabad group?" and first["found"] is True
    assert "Khalid Maqbool Siddiqui" in first["answer"]
    assert 1 <= len(first["passages"]) <= 3  # passages below the relevance floor are not shown
    articles = _articles(root)
    for rank, passage in enumerate(first["passages"], 1):
        assert passage["rank"] == rank
        assert set(passage) >= {"score", "article_id", "title", "source", "date", "url", "text", "start", "end", "full_start", "full_end"}
        text = articles[passage["article_id"]]["text"]
        assert text[passage["start"] : passage["end"]] == passage["text"]
        # the quote a reader is shown lies inside the whole passage behind the Full button
        assert passage["full_start"] <= passage["start"] < passage["end"] <= passage["full_end"]
        assert text[passage["full_start"] : passage["full_end"]] == passage["full_text"]
    assert any("led by MQM-P president Dr Khalid Maqbool Siddiqui" in p["text"] for p in first["passages"])
    assert second["found"] is False and second["passages"] == []
    assert "None of my articles mention “Oslo”" in second["answer"]


def test_ask_reads_questions_from_stdin_and_loads_the_model_once(workdir):
    root, _ = workdir
    result = run_bot("ask", "--top-k", "2", "-v", cwd=root, stdin="Who is the mayor of Karachi?\n\nWho leads MQM-Haqiqi?\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Q: ") == 2
    assert "Murtaza Wahab" in result.stdout and "Afaq Ahmed" in result.stdout
    assert "[3]" not in result.stdout  # --top-k 2
    assert result.stderr.count("loading embedding model") == 1


def test_plain_answer_has_citation_with_title_outlet_and_date(workdir):
    root, _ = workdir
    result = run_bot("ask", "Who is the mayor of Karachi?", cwd=root)
    assert "Why are MQM-P leaders still optimistic" in result.stdout and "Dawn · 2023-12-10" in result.stdout


def test_console_chat_answers_until_end_of_input(workdir):
    root, _ = workdir
    result = run_bot("chat", cwd=root, stdin="Who leads the Bahadurabad group?\nHow do I bake sourdough bread?\n")
    assert result.returncode == 0, result.stderr
    assert "Ask about 2 articles" in result.stdout
    assert "Khalid Maqbool Siddiqui" in result.stdout and "couldn't find" in result.stdout
    assert "Header image" not in result.stdout


def test_console_chat_is_the_same_conversation_as_telegram(workdir):
    """Small talk, a resolved follow-up, /more, /sources, /help and /reset, as in the bot."""
    root, _ = workdir
    lines = [
        "hi", "When did the PSP merge into the MQM-P?", "and what about Farooq Sattar?", "/more", "/sources",
        "/help", "/reset", "thanks!",
    ]  # fmt: skip
    result = run_bot("chat", cwd=root, stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Hello! Ask me about the news" in out  # small talk, not news
    assert "Reading this as: “When did Farooq Sattar merge into the MQM-P?”" in out
    assert "MQM-P groups increasingly separate" in out  # /sources lists the articles
    assert "/reset start over" in out  # /help
    assert "I've forgotten the previous questions" in out  # /reset
    assert "You're welcome!" in out
    assert out.count("Sources") >= 2  # the answers and the /more page are cited


def test_sources_lists_the_articles(workdir):
    root, _ = workdir
    result = run_bot("sources", cwd=root)
    assert result.returncode == 0 and "MQM-P groups increasingly separate" in result.stdout and "Dawn" in result.stdout


def test_ask_without_an_index_says_what_to_run(tmp_path):
    copy_seed_corpus(tmp_path / "corpus")
    result = run_bot("ask", "anything", cwd=tmp_path)
    assert result.returncode == 2
    assert "no index" in result.stderr and "python -m bot index" in result.stderr
    assert "Traceback" not in result.stderr


def test_index_reports_bad_files_and_strict_fails(tmp_path):
    corpus = copy_seed_corpus(tmp_path / "corpus")
    (corpus / "broken.md").write_text("---\ntitle: [unclosed\n---\nbody\n")
    relaxed = run_bot("index", "--json", cwd=tmp_path)
    assert relaxed.returncode == 0, relaxed.stderr
    report = json.loads(relaxed.stdout)
    assert report["articles_added"] == 2
    assert [p["path"] for p in report["problems"]] == ["broken.md"] and "front matter" in report["problems"][0]["reason"]
    strict = run_bot("index", "--strict", cwd=tmp_path)
    assert strict.returncode != 0 and "broken.md" in strict.stdout


def test_index_with_another_model_is_refused_at_ask_time(workdir, tmp_path):
    root, _ = workdir
    # The index is read before the model is loaded: the mismatch is named without importing torch.
    result = run_bot("ask", "x", "--model", "/nonexistent/model", cwd=root)
    assert result.returncode == 2 and "/nonexistent/model" in result.stderr and "all-MiniLM-L6-v2" in result.stderr
    assert "python -m bot index --full" in result.stderr and "Traceback" not in result.stderr
    copy_seed_corpus(tmp_path / "corpus")
    building = run_bot("index", "--model", "/nonexistent/model", cwd=tmp_path)
    assert building.returncode == 2 and "cannot load embedding model" in building.stderr


def test_run_without_token_explains_where_to_put_it(tmp_path):
    result = run_bot("run", cwd=tmp_path)
    assert result.returncode == 2
    assert "TELEGRAM_BOT_TOKEN" in result.stderr and ".env" in result.stderr and "Traceback" not in result.stderr


def test_start_without_token_builds_the_index_then_opens_the_chat(tmp_path):
    """What `make run` does on a fresh clone with no token configured."""
    copy_seed_corpus(tmp_path / "corpus")
    result = run_bot("start", cwd=tmp_path, stdin="Who leads the Bahadurabad group?\n")
    assert result.returncode == 0, result.stderr
    assert "Updating the index" in result.stdout and "No TELEGRAM_BOT_TOKEN" in result.stdout
    assert "led by MQM-P president Dr Khalid Maqbool Siddiqui" in result.stdout
    assert "MQM-P groups increasingly separate" in result.stdout  # the citation
    assert (tmp_path / "index" / "current" / "manifest.json").is_file()


# ------------------------------------------------------------------ logging and date filters


def test_index_prints_no_library_debug_lines(tmp_path):
    """bm25s sets its logger to DEBUG when imported; its "Building index from tokens" stays out."""
    copy_seed_corpus(tmp_path / "corpus")
    result = run_bot("index", cwd=tmp_path, env={"LOG_LEVEL": ""})
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("Full rebuild")


def test_log_level_set_in_env_or_dotenv_applies_to_console_commands(workdir, tmp_path):
    root, _ = workdir
    quiet = run_bot("sources", cwd=root, env={"LOG_LEVEL": ""})
    assert quiet.returncode == 0 and quiet.stderr == ""  # unset: console commands show warnings only
    info = run_bot("sources", cwd=root, env={"LOG_LEVEL": "INFO"})
    assert info.returncode == 0 and "INFO bot.service: serving index" in info.stderr
    # .env in the working directory, as a user configures it; the environment does not set it
    (tmp_path / ".env").write_text(f"LOG_LEVEL=debug\nCORPUS_DIR={root / 'corpus'}\nINDEX_DIR={root / 'index'}\n")
    environment = {k: v for k, v in os.environ.items() if k not in ("LOG_LEVEL", "CORPUS_DIR", "INDEX_DIR", "TELEGRAM_BOT_TOKEN")}
    environment.update(HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    dotenv = subprocess.run(
        [sys.executable, "-m", "bot", "sources"], cwd=tmp_path, capture_output=True, text=True, env=environment, timeout=300
    )
    assert dotenv.returncode == 0, dotenv.stderr
    assert "INFO bot.service: serving index" in dotenv.stderr
    assert "bm25s" not in dotenv.stderr  # library chatter only with -v
    bad = run_bot("sources", cwd=root, env={"LOG_LEVEL": "LOUD"})
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "LOG_LEVEL" in bad.stderr


def _ask_json(root, *options: str) -> dict:
    result = run_bot("ask", "--json", *options, "Who is the mayor of Karachi?", cwd=root)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_date_filters_read_partial_and_written_dates(workdir):
    """The seed articles are dated 2023-12-10: a month, a year or a written day must all find them."""
    root, _ = workdir
    for options in (("--until", "2023-12"), ("--since", "Dec 1 2023"), ("--since", "2023", "--until", "December 2023")):
        answer = _ask_json(root, *options)
        assert answer["found"] is True and answer["passages"], options
    assert _ask_json(root, "--until", "2023-11")["passages"] == []
    assert _ask_json(root, "--since", "2024")["passages"] == []


@pytest.mark.parametrize(
    "options, says",
    [
        (("--since", "sometime"), "--since: cannot read 'sometime' as a date"),
        (("--until", "Dec 1"), "--until: 'Dec 1' has no year"),
        (("--until", "2023-13"), "--until: cannot read '2023-13'"),
        (("--since", "2024", "--until", "2023"), "--since 2024-01-01 is after --until 2023-12-31"),
    ],
)
def test_unreadable_dates_are_one_line_errors_with_exit_code_2(tmp_path, options, says):
    result = run_bot("ask", *options, "anything", cwd=tmp_path)  # refused before the index is even looked for
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"error: {says}"), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
