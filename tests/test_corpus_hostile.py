"""Reading a corpus nobody vetted: links out of the folder, link loops, deeply nested
JSON/YAML, impossible dates, oversized and binary files. A bad file is reported by path
and reason; nothing outside the corpus folder is ever read; the rest is indexed."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import pytest

import bot.corpus as corpus
from bot.config import DEFAULT_MAX_ARTICLE_BYTES, Settings
from bot.corpus import JSON_FILE_SIZE_FACTOR, IngestReport, load_corpus, read_article_file, read_file_with_problems
from bot.errors import ArticleError, ConfigError
from tests.helpers import FakeEmbedder, REPO, make_settings, write

SECRET = "TELEGRAM_BOT_TOKEN=123456789:SECRET-never-quote-me"
GOOD = "Council approves water plan\n\nThe city council approved the new water plan on Monday. Work begins soon.\n"

needs_symlinks = pytest.mark.skipif(not hasattr(os, "symlink") or os.name == "nt", reason="needs POSIX symlinks")


@pytest.fixture
def layout(tmp_path) -> tuple[Path, Path]:
    """(corpus folder with one good article, a folder outside it holding a secret)."""
    corpus_dir = tmp_path / "corpus"
    write(corpus_dir / "good.md", GOOD)
    outside = tmp_path / "outside"
    write(outside / ".env", SECRET + "\n")
    write(outside / "secret.txt", "Secret headline\n\n" + SECRET + "\n")
    write(outside / "meta.yaml", f"title: {SECRET!r}\nauthor: {SECRET!r}\n")
    return corpus_dir, outside


def nothing_quotes_the_secret(report: IngestReport) -> None:
    for article in report.articles:
        assert "SECRET" not in json.dumps(asdict(article)), article.article_id
    # nor do the reasons (they must not echo the contents of a file outside)
    for problem in report.problems + report.warnings:
        assert "SECRET" not in problem.reason


def reasons(report: IngestReport) -> dict[str, str]:
    return {problem.path: problem.reason for problem in report.problems}


def warnings(report: IngestReport) -> dict[str, str]:
    return {warning.path: warning.reason for warning in report.warnings}


# ------------------------------------------------------------------------------- links


@needs_symlinks
def test_link_to_a_file_outside_the_corpus_is_reported_and_never_read(layout):
    corpus_dir, outside = layout
    (corpus_dir / "outside_link.txt").symlink_to(outside / "secret.txt")
    (corpus_dir / "dotenv.md").symlink_to(outside / ".env")
    (corpus_dir / "relative.txt").symlink_to(Path("..") / "outside" / "secret.txt")  # a ../ link
    report = load_corpus(corpus_dir)

    nothing_quotes_the_secret(report)
    assert [a.article_id for a in report.articles] == ["good.md"]
    found = reasons(report)
    assert set(found) == {"outside_link.txt", "dotenv.md", "relative.txt"}
    assert all("links outside the corpus folder" in reason for reason in found.values())
    assert report.files_seen == 4
    # the single-file entry points hold the same line
    articles, problems = read_file_with_problems(corpus_dir / "outside_link.txt", corpus_dir)
    assert articles == [] and [(p.path, "outside the corpus" in p.reason) for p in problems] == [
        ("outside_link.txt", True)
    ]
    with pytest.raises(ArticleError, match="links outside the corpus folder"):
        read_article_file(corpus_dir / "dotenv.md", corpus_dir)


@needs_symlinks
def test_sidecar_linking_outside_the_corpus_is_never_read(layout):
    corpus_dir, outside = layout
    write(corpus_dir / "story.md", "Story headline\n\nA story about the harbour. It has text.\n")
    (corpus_dir / "story.md.meta.yaml").symlink_to(outside / "meta.yaml")
    report = load_corpus(corpus_dir)

    nothing_quotes_the_secret(report)
    assert [a.article_id for a in report.articles] == ["good.md"]
    reason = reasons(report)["story.md"]
    assert "story.md.meta.yaml" in reason and "links outside the corpus folder" in reason


@needs_symlinks
def test_linked_folder_pointing_outside_is_reported_and_not_walked(layout):
    corpus_dir, outside = layout
    (corpus_dir / "mounted").symlink_to(outside, target_is_directory=True)
    (corpus_dir / "up").symlink_to(Path(".."), target_is_directory=True)  # ../ : the folder holding the corpus
    report = load_corpus(corpus_dir)

    nothing_quotes_the_secret(report)
    assert [a.article_id for a in report.articles] == ["good.md"]
    found = reasons(report)
    assert set(found) == {"mounted", "up"}
    assert all("links outside the corpus folder" in reason for reason in found.values())


@needs_symlinks
def test_link_loops_and_broken_links_are_reported_not_fatal(layout):
    corpus_dir, _ = layout
    (corpus_dir / "a.txt").symlink_to("b.txt")
    (corpus_dir / "b.txt").symlink_to("a.txt")
    (corpus_dir / "self.md").symlink_to("self.md")
    (corpus_dir / "gone.md").symlink_to("nowhere.md")
    (corpus_dir / "loopdir").symlink_to("loopdir", target_is_directory=True)
    (corpus_dir / "here").symlink_to(".", target_is_directory=True)  # a folder loop inside the corpus
    report = load_corpus(corpus_dir)

    assert [a.article_id for a in report.articles] == ["good.md"]
    found = reasons(report)
    assert set(found) == {"a.txt", "b.txt", "self.md", "gone.md"}
    assert all("symbolic link loop" in found[name] for name in ("a.txt", "b.txt", "self.md"))
    assert "broken link" in found["gone.md"]
    assert "not followed" in warnings(report)["here"]


@needs_symlinks
def test_link_inside_the_corpus_is_allowed_and_indexed_once(tmp_path):
    corpus_dir = tmp_path / "corpus"
    write(corpus_dir / "real.md", GOOD)
    (corpus_dir / "a_alias.md").symlink_to("real.md")  # sorts first; the real path still wins
    (corpus_dir / "sub").mkdir()
    (corpus_dir / "sub" / "deep_alias.txt").symlink_to(Path("..") / "real.md")
    os.link(corpus_dir / "real.md", corpus_dir / "z_hardlink.md")
    write(corpus_dir / ".drafts" / "draft.md", "Draft headline\n\nA draft reached only through a link.\n")
    (corpus_dir / "published.md").symlink_to(Path(".drafts") / "draft.md")
    report = load_corpus(corpus_dir)

    assert [a.article_id for a in report.articles] == ["published.md", "real.md"]
    assert report.problems == []
    assert report.files_seen == 2
    noted = warnings(report)
    assert set(noted) == {"a_alias.md", "sub/deep_alias.txt", "z_hardlink.md"}
    assert all("same file as real.md" in reason for reason in noted.values())
    # a single link inside is read like any file
    assert read_article_file(corpus_dir / "a_alias.md", corpus_dir)[0].title == "Council approves water plan"


# ---------------------------------------------------------------- any failure is per file


def test_deeply_nested_json_is_reported_and_the_rest_indexed(tmp_path):
    depth = 100_000
    write(tmp_path / "good.md", GOOD)
    write(tmp_path / "deep_list.json", "[" * depth + "]" * depth)
    write(tmp_path / "deep_object.json", '{"a":' * depth + "1" + "}" * depth)
    good_record = {"title": "Record headline", "body": "A record body. It has text."}
    write(tmp_path / "lines.jsonl", "[" * depth + "]" * depth + "\n" + json.dumps(good_record) + "\n")
    write(tmp_path / "deep_front.md", "---\ntitle: " + "[" * 5000 + "]" * 5000 + "\n---\nBody text here.\n")
    report = load_corpus(tmp_path)

    assert sorted(a.title for a in report.articles) == ["Council approves water plan", "Record headline"]
    found = reasons(report)
    assert set(found) == {"deep_list.json", "deep_object.json", "lines.jsonl#0", "deep_front.md"}
    for path in ("deep_list.json", "deep_object.json", "lines.jsonl#0", "deep_front.md"):
        assert "nested too deeply" in found[path]
    assert "line 1" in found["lines.jsonl#0"]


@pytest.mark.parametrize("error", [ValueError("bad value"), MemoryError(), OSError(5, "I/O error"), LookupError()])
def test_any_failure_in_one_file_is_that_files_problem(tmp_path, monkeypatch, error):
    write(tmp_path / "good.md", GOOD)
    write(tmp_path / "cursed.md", "Cursed headline\n\nSomething in here breaks a parser.\n")
    real_clean = corpus.clean_text

    def clean_text(raw: str) -> str:
        if "Something in here breaks" in raw:
            raise error
        return real_clean(raw)

    monkeypatch.setattr(corpus, "clean_text", clean_text)
    report = load_corpus(tmp_path)
    assert [a.article_id for a in report.articles] == ["good.md"]
    assert list(reasons(report)) == ["cursed.md"]
    assert reasons(report)["cursed.md"]


def test_one_failing_json_record_does_not_lose_the_others(tmp_path, monkeypatch):
    records = [
        {"title": "First headline", "body": "First body. It has text."},
        {"title": "Cursed headline", "body": "Something in here breaks a parser."},
        {"title": "Third headline", "body": "Third body. It has text."},
    ]
    path = write(tmp_path / "many.json", json.dumps(records))
    real_clean = corpus.clean_text

    def clean_text(raw: str) -> str:
        if "breaks a parser" in raw:
            raise ValueError("boom")
        return real_clean(raw)

    monkeypatch.setattr(corpus, "clean_text", clean_text)
    articles, problems = read_file_with_problems(path, tmp_path)
    assert [a.title for a in articles] == ["First headline", "Third headline"]
    assert [(p.path, "ValueError" in p.reason) for p in problems] == [("many.json#1", True)]


def test_keyboard_interrupt_is_not_swallowed(tmp_path, monkeypatch):
    write(tmp_path / "good.md", GOOD)

    def interrupted(raw: str) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(corpus, "clean_text", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_corpus(tmp_path)


def test_yaml_aliases_cannot_blow_up_a_metadata_field(tmp_path):
    # a small "billion laughs": nested aliases; only one level of list is ever flattened
    front = (
        "---\n"
        "a: &a [lol, lol, lol]\n"
        "b: &b [*a, *a, *a]\n"
        "c: &c [*b, *b, *b]\n"
        "title: *c\n"
        "author: [Ayesha Khan, [nested, list], Bilal Ahmed]\n"
        "---\n"
    )
    article = read_article_file(write(tmp_path / "laughs.md", front + GOOD), tmp_path)[0]
    assert article.title == "Council approves water plan"  # the nested title is ignored
    assert article.author == "Ayesha Khan, Bilal Ahmed"


# ----------------------------------------------------------------------------------- dates


def test_invalid_front_matter_date_is_dropped_with_a_warning(tmp_path):
    write(tmp_path / "good.md", GOOD)
    write(tmp_path / "bad_date.md", "---\ntitle: Impossible date\ndate: 2025-13-45\n---\n\nThe text itself is fine.\n")
    write(
        tmp_path / "tagged.md",
        "---\ntitle: Tagged date\ndate: !!timestamp 2025-02-30\n---\n\n"
        "The text is fine.\nPublished December 10, 2023\n",
    )
    write(tmp_path / "sidecar.md", "Sidecar headline\n\nThe text is fine.\n")
    write(tmp_path / "sidecar.md.meta.json", json.dumps({"date": "2023-02-30", "author": "Staff"}))
    write(
        tmp_path / "records.jsonl",
        json.dumps({"title": "Record", "body": "Record body.", "published_at": "2023-99-01T00:00:00Z"}) + "\n",
    )
    report = load_corpus(tmp_path)

    assert report.problems == []
    by_id = {a.article_id: a for a in report.articles}
    assert set(by_id) == {"good.md", "bad_date.md", "tagged.md", "sidecar.md"} | {
        a.article_id for a in report.articles if a.path == "records.jsonl"
    }
    assert len(report.articles) == 5
    assert by_id["bad_date.md"].date is None and by_id["bad_date.md"].text == "The text itself is fine."
    assert by_id["tagged.md"].date == "2023-12-10"  # the in-text line still gives the date
    assert by_id["sidecar.md"].date is None and by_id["sidecar.md"].author == "Staff"
    noted = warnings(report)
    assert "2025-13-45" in noted["bad_date.md"] and "front matter" in noted["bad_date.md"]
    assert "2025-02-30" in noted["tagged.md"]
    assert "2023-02-30" in noted["sidecar.md"] and "sidecar.md.meta.json" in noted["sidecar.md"]
    assert "2023-99-01" in noted["records.jsonl#0"]
    assert all("not a valid date" in reason for reason in noted.values())


@pytest.mark.parametrize(
    "value, expected, warned",
    [
        ("2023-12-10", "2023-12-10", False),  # YAML makes a datetime.date
        ("2023-12-10 08:45:00", "2023-12-10", False),  # YAML makes a datetime
        ("'10 December 2023'", "2023-12-10", False),
        ("20231210", None, True),  # an int
        ("[2023-12-10]", None, True),  # a list
        ("{year: 2023}", None, True),  # a mapping
        ("true", None, True),  # a bool
        ("1.0e+400", None, True),  # a float (inf)
        ("12.5", None, True),  # a float
        ("2023-12", None, True),  # a partial date
        ("null", None, False),  # no date at all: nothing to warn about
    ],
)
def test_front_matter_dates_of_any_yaml_type(tmp_path, value, expected, warned):
    write(tmp_path / "dated.md", f"---\ntitle: Dated\ndate: {value}\n---\n\nBody text here.\n")
    report = load_corpus(tmp_path)
    assert report.problems == []
    assert [a.date for a in report.articles] == [expected]
    assert ("dated.md" in warnings(report)) is warned


# ------------------------------------------------------------------------------------ size


def test_oversized_files_are_reported_with_size_and_setting(tmp_path):
    limit = 1000
    write(tmp_path / "good.md", GOOD)
    write(tmp_path / "big.txt", "Big headline\n\n" + "word " * 300)  # 1,514 bytes
    records = [{"title": f"Record {i}", "body": "A record body that is short. " * 3} for i in range(600)]
    write(tmp_path / "huge.json", json.dumps(records))  # above 50 x the limit
    write(
        tmp_path / "mixed.jsonl",
        "\n".join(
            json.dumps(record)
            for record in (
                {"title": "Small record", "body": "A short body."},
                {"title": "Large record", "body": "word " * 250},  # 1,250 bytes of body
                {"title": "x" * 600, "body": "y " * 250},  # small body, but 1,100 bytes in all
            )
        ),
    )
    report = load_corpus(tmp_path, max_article_bytes=limit)

    assert sorted(a.title for a in report.articles) == ["Council approves water plan", "Small record"]
    found = reasons(report)
    assert set(found) == {"big.txt", "huge.json", "mixed.jsonl#1", "mixed.jsonl#2"}
    size = (tmp_path / "big.txt").stat().st_size
    assert f"{size:,} bytes" in found["big.txt"] and "MAX_ARTICLE_BYTES" in found["big.txt"]
    assert "1,000 bytes" in found["big.txt"]
    assert f"{(tmp_path / 'huge.json').stat().st_size:,} bytes" in found["huge.json"]
    assert f"{JSON_FILE_SIZE_FACTOR} x MAX_ARTICLE_BYTES" in found["huge.json"]
    assert "1,250 bytes" in found["mixed.jsonl#1"] and "MAX_ARTICLE_BYTES" in found["mixed.jsonl#1"]
    assert "MAX_ARTICLE_BYTES" in found["mixed.jsonl#2"]
    # the same files pass under the default limit
    assert load_corpus(tmp_path).problems == []


def test_a_file_larger_than_its_stat_says_is_read_only_up_to_the_limit(tmp_path, monkeypatch):
    limit = 1000
    path = write(tmp_path / "grows.txt", "Growing headline\n\n" + "word " * 2000)
    real_stat = os.stat

    def stale_stat(target, *args, **kwargs):  # the file grew after it was looked at
        result = real_stat(target, *args, **kwargs)
        if str(target).endswith("grows.txt"):
            values = list(result)
            values[6] = 10  # st_size
            return os.stat_result(values)
        return result

    monkeypatch.setattr(os, "stat", stale_stat)
    articles, problems = read_file_with_problems(path, tmp_path, max_article_bytes=limit)
    assert articles == []
    assert [p.path for p in problems] == ["grows.txt"]
    assert "at least 1,001 bytes" in problems[0].reason  # never more than limit + 1 read


def test_max_article_bytes_setting_default_validation_and_docs(tmp_path):
    assert Settings().max_article_bytes == DEFAULT_MAX_ARTICLE_BYTES == 2_000_000
    assert Settings.from_mapping({"MAX_ARTICLE_BYTES": "5000"}).max_article_bytes == 5000
    with pytest.raises(ConfigError, match="MAX_ARTICLE_BYTES"):
        Settings.from_mapping({"MAX_ARTICLE_BYTES": "0"})
    with pytest.raises(ConfigError, match="MAX_ARTICLE_BYTES"):
        Settings.from_mapping({"MAX_ARTICLE_BYTES": "lots"})
    assert "\nMAX_ARTICLE_BYTES=2000000\n" in (REPO / ".env.example").read_text(encoding="utf-8")


def test_the_index_build_applies_max_article_bytes(tmp_path):
    from bot.indexing import build_index

    corpus_dir = tmp_path / "corpus"
    write(corpus_dir / "good.md", GOOD)
    write(corpus_dir / "big.txt", "Big headline\n\n" + "word " * 300)
    report = build_index(make_settings(tmp_path, MAX_ARTICLE_BYTES="1000"), FakeEmbedder(), progress=False)
    assert report.articles_added == ["good.md"]
    assert [(p.path, "MAX_ARTICLE_BYTES" in p.reason) for p in report.problems] == [("big.txt", True)]


# ---------------------------------------------------------------------- binary and odd files


def test_binary_and_non_utf8_files_are_reported(tmp_path):
    write(tmp_path / "good.md", GOOD)
    write(tmp_path / "nul.txt", b"Looks like text\n\n\x00\x01\x02 but holds NUL bytes\n")  # valid UTF-8
    write(tmp_path / "random.md", bytes(range(0x80, 0x100)) * 4)
    write(tmp_path / "image.html", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xd8")
    write(tmp_path / "blob.json", b"\xc3\x28\xa0\xa1 not json either")
    report = load_corpus(tmp_path)

    assert [a.article_id for a in report.articles] == ["good.md"]
    found = reasons(report)
    assert set(found) == {"nul.txt", "random.md", "image.html", "blob.json"}
    assert "binary" in found["nul.txt"] and "binary" in found["image.html"]
    assert "not UTF-8 text" in found["random.md"] and "not UTF-8 text" in found["blob.json"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_named_pipe_is_reported_not_opened(tmp_path):
    write(tmp_path / "good.md", GOOD)
    os.mkfifo(tmp_path / "pipe.txt")  # opening it for reading would block forever
    report = load_corpus(tmp_path)
    assert [a.article_id for a in report.articles] == ["good.md"]
    assert "not a regular file" in reasons(report)["pipe.txt"]
