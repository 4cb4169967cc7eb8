"""Reading the corpus: seed articles, the MultiHop-RAG corpus, metadata, cleaning, bad input."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path

import pytest

from bot.corpus import (
    IngestReport,
    clean_text,
    content_hash,
    load_corpus,
    normalize_date,
    read_article_file,
    read_file_with_problems,
)
from bot.errors import ArticleError, CorpusError
from bot.types import Article
from tests.helpers import write

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "corpus"
SEED_000 = "000_2b813561cee9ca12.txt"
SEED_001 = "001_f49d1b64f5768f9f.txt"
MULTIHOP = REPO.parent / "shared" / "benchmarks" / "multihop-rag" / "corpus_train.json"

REPEATED_CAPTION = (
    "Conversations with MQM-P leaders confirm that the influence of the security establishment in party "
    "affairs has grown to the extent that it routinely decides what the MQM-P should and should not do | "
    "Facebook/MQM"
)


def read_one(path: Path, corpus_dir: Path) -> Article:
    articles = read_article_file(path, corpus_dir)
    assert len(articles) == 1
    return articles[0]


PROSE = (
    "The city council approved the new water plan on Monday. "
    "Officials said the work would begin next month.\n\n"
    "Residents welcomed the decision. Some said it came too late."
)


# ------------------------------------------------------------------------- seed articles


@pytest.fixture(scope="module")
def seed_report() -> IngestReport:
    return load_corpus(CORPUS)


@pytest.fixture(scope="module")
def seeds(seed_report) -> dict[str, Article]:
    return {article.article_id: article for article in seed_report.articles}


def test_seed_corpus_reads_both_files_and_skips_the_readme(seed_report):
    assert (CORPUS / "README.md").is_file()
    assert seed_report.problems == []
    ids = [article.article_id for article in seed_report.articles]
    assert ids[:2] == [SEED_000, SEED_001]  # sorted by path; later additions sort after "0..."
    assert "README.md" not in ids
    assert seed_report.files_seen == len(ids)
    assert [article.path for article in seed_report.articles[:2]] == [SEED_000, SEED_001]


def test_seed_files_are_byte_identical_to_the_shared_originals():
    shared = REPO.parent / "shared" / "seed-articles"
    for name in (SEED_000, SEED_001):
        assert (CORPUS / name).read_bytes() == (shared / name).read_bytes()


def test_seed_000_title_footer_and_unknown_metadata(seeds):
    article = seeds[SEED_000]
    assert article.title == "MQM-P groups increasingly separate"
    assert not article.text.startswith("MQM-P groups increasingly separate")
    assert article.text.startswith("KARACHI:\n\nThe two factions")  # the dateline is article text
    assert "Leave a Comment" not in article.text
    assert "Your email address" not in article.text
    assert article.text.endswith("allowing workers to decide who to follow.")
    assert "Kamaml" in article.text  # the body is kept as it is, typo included
    assert article.source is None
    assert article.date is None
    assert article.url is None


def test_seed_001_title_outlet_date_and_cleaning(seeds):
    article = seeds[SEED_001]
    assert (
        article.title == "Why are MQM-P leaders still optimistic about the party’s chances in the upcoming elections?"
    )
    assert article.source == "Dawn"
    assert article.date == "2023-12-10"
    assert article.text.count(REPEATED_CAPTION) == 1
    assert "Header image:" in article.text
    assert "Published in Dawn" not in article.text
    assert "Published December 10, 2023" not in article.text
    assert "‘The real question should be about the future of urban Sindh’" in article.text
    assert "KMS: We do not have any such information" in article.text
    assert article.text.startswith("A charged Muttahida Qaumi Movement-Pakistan")
    assert "\n\n\n" not in article.text
    assert "\r" not in article.text


def test_seed_body_text_is_kept_apart_from_removed_lines(seeds):
    """Every paragraph of the original survives (whitespace aside) except the removed lines."""
    original = (CORPUS / SEED_001).read_text(encoding="utf-8")
    removed = {
        "Why are MQM-P leaders still optimistic about the party’s chances in the upcoming elections?",
        "Published December 10, 2023",
        "Published in Dawn, EOS, December 10th, 2023",
    }
    text = seeds[SEED_001].text
    for line in original.split("\n"):
        line = line.strip()
        if line and line not in removed:
            assert line in text


# -------------------------------------------------------------------------- MultiHop-RAG


@pytest.fixture(scope="module")
def multihop() -> tuple[list[Article], list[dict]]:
    assert MULTIHOP.is_file(), f"expected the shared benchmark at {MULTIHOP}"
    records = json.loads(MULTIHOP.read_text(encoding="utf-8"))
    return read_article_file(MULTIHOP, MULTIHOP.parent), records


def test_multihop_corpus_ingests_609_articles_with_metadata(multihop):
    articles, records = multihop
    assert len(articles) == 609
    assert len({article.article_id for article in articles}) == 609
    for article, record in zip(articles, records):
        assert article.title == " ".join(record["title"].split())  # a few end in a no-break space
        assert article.source == record["source"]
        assert article.url == record["url"]
        assert article.date == record["published_at"][:10]
        assert len(article.date) == 10 and date.fromisoformat(article.date)
        assert article.article_id.startswith("corpus_train.json#")
        assert article.path == "corpus_train.json"
        assert article.text.strip()


def test_multihop_spot_check_one_record(multihop):
    articles, _ = multihop
    by_url = {article.url: article for article in articles}
    article = by_url["https://mashable.com/article/cyber-monday-deals-amazon-2023"]
    assert article.title == "200+ of the best deals from Amazon's Cyber Monday sale"
    assert article.source == "Mashable"
    assert article.date == "2023-11-27"
    assert article.author is None
    assert article.text.startswith("Table of Contents")


def test_multihop_ids_are_stable_across_reads(multihop):
    articles, _ = multihop
    again = read_article_file(MULTIHOP, MULTIHOP.parent)
    assert [a.article_id for a in again] == [a.article_id for a in articles]
    assert [content_hash(a) for a in again] == [content_hash(a) for a in articles]


# ------------------------------------------------------------------------------ bad input


def test_bad_files_are_reported_and_good_ones_still_load(tmp_path):
    write(tmp_path / "good.md", "# A good article\n\n" + PROSE)
    write(tmp_path / "latin1.txt", "Caf\xe9 closes\n\nThe caf\xe9 closed on Monday.".encode("latin-1"))
    write(tmp_path / "binary.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    write(tmp_path / "empty.txt", "")
    write(tmp_path / "blank.md", "  \n\n\t\n")
    write(tmp_path / "frontmatter.md", "---\ntitle: [unclosed\nsource: Dawn\n---\nBody text here.")
    write(tmp_path / "invalid.json", '{"title": "x", "body": "y",,}')
    write(
        tmp_path / "list.json",
        json.dumps(
            [
                {"title": "First record", "body": "The first body. It has text.", "url": "https://e.com/1"},
                {"title": "Missing body"},
                {"body": "A body without any title."},
                {"title": "Third record", "text": "Body given as text.", "date": "2023-12-10"},
            ]
        ),
    )
    report = load_corpus(tmp_path)

    assert report.files_seen == 8
    assert sorted(article.title for article in report.articles) == ["A good article", "First record", "Third record"]
    reasons = {problem.path: problem.reason for problem in report.problems}
    assert set(reasons) == {
        "latin1.txt",
        "binary.txt",
        "empty.txt",
        "blank.md",
        "frontmatter.md",
        "invalid.json",
        "list.json#1",
        "list.json#2",
    }
    assert "UTF-8" in reasons["latin1.txt"]
    assert "binary" in reasons["binary.txt"]
    assert "empty" in reasons["empty.txt"]
    assert "empty" in reasons["blank.md"]
    assert reasons["frontmatter.md"].startswith("broken front matter:")
    assert "line" in reasons["frontmatter.md"]
    assert "invalid JSON" in reasons["invalid.json"] and "line 1, column" in reasons["invalid.json"]
    assert "body" in reasons["list.json#1"]
    assert "title" in reasons["list.json#2"]
    for problem in report.problems:
        assert str(problem) == f"{problem.path}: {problem.reason}"


def test_read_article_file_raises_with_the_relative_path(tmp_path):
    path = write(tmp_path / "sub" / "latin1.txt", "Caf\xe9".encode("latin-1"))
    with pytest.raises(ArticleError) as caught:
        read_article_file(path, tmp_path)
    assert caught.value.path == "sub/latin1.txt"
    assert "not UTF-8" in caught.value.reason


def test_utf8_with_byte_order_mark_is_fine(tmp_path):
    path = write(tmp_path / "bom.txt", "\ufeffBOM title\n\nBody of the article.".encode("utf-8"))
    article = read_one(path, tmp_path)
    assert article.title == "BOM title"
    assert article.text == "Body of the article."


def test_utf16_is_reported_as_such(tmp_path):
    path = write(tmp_path / "wide.txt", "Title\n\nBody.".encode("utf-16"))
    with pytest.raises(ArticleError, match="UTF-16"):
        read_article_file(path, tmp_path)


def test_title_only_file_has_no_body(tmp_path):
    path = write(tmp_path / "title-only.txt", "Just a title\n\nPublished December 10, 2023\n")
    with pytest.raises(ArticleError, match="no article text"):
        read_article_file(path, tmp_path)


def test_json_list_where_every_record_is_bad_raises(tmp_path):
    path = write(tmp_path / "bad.json", json.dumps([{"title": "no body"}, {"body": "no title"}]))
    with pytest.raises(ArticleError, match="no readable article"):
        read_article_file(path, tmp_path)
    articles, problems = read_file_with_problems(path, tmp_path)
    assert articles == [] and [p.path for p in problems] == ["bad.json#0", "bad.json#1"]


@pytest.mark.parametrize(
    "content, reason",
    [
        ("[]", "empty"),
        ('"just a string"', "expected a JSON object"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_json_shapes_that_hold_no_article(tmp_path, content, reason):
    path = write(tmp_path / "odd.json", content)
    with pytest.raises(ArticleError, match=reason):
        read_article_file(path, tmp_path)


def test_missing_corpus_folder_says_what_to_do(tmp_path):
    with pytest.raises(CorpusError) as caught:
        load_corpus(tmp_path / "nope")
    message = str(caught.value)
    assert "does not exist" in message and "CORPUS_DIR" in message and "--corpus" in message


def test_corpus_path_that_is_a_file(tmp_path):
    with pytest.raises(CorpusError, match="not a folder"):
        load_corpus(write(tmp_path / "file.txt", "x"))


def test_walk_is_recursive_sorted_and_skips_what_it_should(tmp_path):
    write(tmp_path / "README.md", "# Corpus notes\n\nNot an article.")
    write(tmp_path / "b" / "README.md", "Nested readme\n\nThis one is an article.")
    write(tmp_path / "a.txt", "Article A\n\nText A.")
    write(tmp_path / "b" / "c.markdown", "Article C\n\nText C.")
    write(tmp_path / ".hidden.txt", "Hidden\n\nNo.")
    write(tmp_path / ".git" / "x.txt", "Hidden dir\n\nNo.")
    write(tmp_path / "notes.docx", b"PK\x03\x04")
    write(tmp_path / "image.png", b"\x89PNG\x00")
    report = load_corpus(tmp_path)
    assert [a.article_id for a in report.articles] == ["a.txt", "b/README.md", "b/c.markdown"]
    assert report.files_seen == 3
    assert report.problems == []


# -------------------------------------------------------------------------- html and jsonl

HTML_PAGE = """<!DOCTYPE html>
<html><head><title>Karachi water crisis deepens | The Daily Example</title>
<meta property="og:title" content="Karachi water crisis deepens">
<meta property="og:site_name" content="The Daily Example">
<meta name="author" content="Sana Ahmed">
<meta property="article:published_time" content="2023-11-05T09:30:00+05:00">
<link rel="canonical" href="https://example.com/news/karachi-water">
</head><body><nav><a href="/">Home</a> | <a href="/world">World</a></nav>
<article><h1>Karachi water crisis deepens</h1>
<p>Residents of several Karachi neighbourhoods have gone without piped water for more than a week, officials said on Sunday.</p>
<p>The water board blamed a breakdown at a pumping station. Engineers expect repairs to take three more days. Tanker prices have doubled in the meantime.</p>
<p>“We are buying water every day,” said one resident of Orangi Town. “Nobody tells us when it will come back.”</p>
</article><footer>Copyright 2023 The Daily Example. All rights reserved.</footer></body></html>
"""


def test_html_article_text_and_metadata(tmp_path):
    article = read_one(write(tmp_path / "news" / "water.html", HTML_PAGE), tmp_path)
    assert article.article_id == "news/water.html"
    assert article.title == "Karachi water crisis deepens"
    assert article.date == "2023-11-05"
    assert article.url == "https://example.com/news/karachi-water"
    assert article.author == "Sana Ahmed"
    assert article.source == "The Daily Example"
    assert article.text.startswith("Residents of several Karachi neighbourhoods")
    assert "The water board blamed a breakdown" in article.text
    assert "\n\n" in article.text  # one paragraph per <p>
    assert "Home" not in article.text and "Copyright" not in article.text


def test_html_without_trafilatura_title_falls_back_to_the_title_tag(tmp_path):
    page = (
        "<html><head><title>Fallback headline</title></head><body>"
        "<p>Only a short paragraph of text lives on this page, and nothing else at all.</p>"
        "</body></html>"
    )
    article = read_one(write(tmp_path / "short.htm", page), tmp_path)
    assert article.title == "Fallback headline"
    assert "short paragraph" in article.text
    assert article.date is None


def test_jsonl_records_with_metadata_and_per_line_problems(tmp_path):
    lines = [
        {
            "title": "One",
            "content": "First body.",
            "outlet": "Dawn",
            "published": "Dec 10, 2023",
            "link": "https://e.com/1",
        },
        {"title": "Two", "body": "Second body.", "publisher": "AP", "date": "2023-11-27 08:45:59.000000000Z"},
    ]
    text = json.dumps(lines[0]) + "\n\n" + "{not json}\n" + json.dumps(lines[1]) + "\n"
    path = write(tmp_path / "feed.jsonl", text)
    articles, problems = read_file_with_problems(path, tmp_path)
    assert [(a.title, a.source, a.date, a.url) for a in articles] == [
        ("One", "Dawn", "2023-12-10", "https://e.com/1"),
        ("Two", "AP", "2023-11-27", None),
    ]
    assert articles[0].text == "First body."
    assert [p.path for p in problems] == ["feed.jsonl#1"]
    assert "invalid JSON on line 3" in problems[0].reason
    assert all(a.article_id.startswith("feed.jsonl#") for a in articles)


def test_json_ids_are_unique_even_when_records_collide(tmp_path):
    records = [{"title": "Same", "body": "Body one."}, {"title": "Same", "body": "Body two."}]
    articles = read_article_file(write(tmp_path / "dup.json", json.dumps(records)), tmp_path)
    ids = [a.article_id for a in articles]
    assert len(set(ids)) == 2
    assert ids[1] == ids[0] + "-1"


def test_single_json_object_is_one_article_with_the_path_as_id(tmp_path):
    record = {"title": "Solo", "body": "Solo body.", "author": ["A. Writer", "B. Writer"]}
    article = read_one(write(tmp_path / "solo.json", json.dumps(record)), tmp_path)
    assert article.article_id == "solo.json"
    assert article.author == "A. Writer, B. Writer"


# ------------------------------------------------------------------ front matter, sidecars


def test_front_matter_gives_metadata_and_keeps_first_line_as_body(tmp_path):
    text = (
        "---\n"
        "title: Water plan approved\n"
        "outlet: The Daily Example\n"
        "published_at: 2023-12-10\n"
        "link: https://example.com/plan\n"
        "author: Sana Ahmed\n"
        "---\n"
        "KARACHI:\n\n" + PROSE
    )
    article = read_one(write(tmp_path / "plan.md", text), tmp_path)
    assert (article.title, article.source, article.date, article.url, article.author) == (
        "Water plan approved",
        "The Daily Example",
        "2023-12-10",
        "https://example.com/plan",
        "Sana Ahmed",
    )
    assert article.text.startswith("KARACHI:\n\nThe city council")


def test_front_matter_without_title_uses_the_first_line(tmp_path):
    article = read_one(write(tmp_path / "x.md", "---\nsource: Dawn\n---\n\n## The headline ##\n\n" + PROSE), tmp_path)
    assert article.title == "The headline"
    assert article.source == "Dawn"
    assert article.text.startswith("The city council")


@pytest.mark.parametrize(
    "front_matter, expected",
    [
        ("---\ntitle: a: b: c\n---\n", "broken front matter: mapping values are not allowed here (line 2"),
        ("---\n- just\n- a list\n---\n", "broken front matter: expected 'key: value' lines"),
        ("---\ntitle: never closed\n", "broken front matter: no closing '---'"),
    ],
)
def test_broken_front_matter(tmp_path, front_matter, expected):
    path = write(tmp_path / "broken.md", front_matter + "Body text.")
    with pytest.raises(ArticleError) as caught:
        read_article_file(path, tmp_path)
    assert caught.value.reason.startswith(expected)


def test_sidecar_adds_and_overrides_metadata_without_touching_the_body(tmp_path):
    path = write(tmp_path / "story.txt", "Original headline\nPublished December 10, 2023\n\n" + PROSE)
    before = read_one(path, tmp_path)
    write(tmp_path / "story.txt.meta.yaml", "title: Better headline\nsource: Dawn\nurl: https://e.com/story\n")
    after = read_one(path, tmp_path)
    assert before.title == "Original headline" and before.source is None and before.date == "2023-12-10"
    assert (after.title, after.source, after.url, after.date) == (
        "Better headline",
        "Dawn",
        "https://e.com/story",
        "2023-12-10",
    )
    assert after.text == before.text
    report = load_corpus(tmp_path)
    assert report.files_seen == 1 and report.problems == [] and len(report.articles) == 1


def test_json_sidecar_and_broken_sidecar(tmp_path):
    path = write(tmp_path / "a.md", "Headline\n\n" + PROSE)
    write(tmp_path / "a.md.meta.json", json.dumps({"date": "10 December 2023", "author": "Staff"}))
    article = read_one(path, tmp_path)
    assert (article.date, article.author) == ("2023-12-10", "Staff")
    write(tmp_path / "a.md.meta.json", "{broken")
    with pytest.raises(ArticleError, match="broken metadata sidecar a.md.meta.json"):
        read_article_file(path, tmp_path)


def test_orphan_sidecar_is_reported_not_ingested(tmp_path):
    write(tmp_path / "real.txt", "Real\n\nText.")
    write(tmp_path / "gone.txt.meta.yaml", "title: Orphan\n")
    report = load_corpus(tmp_path)
    assert [a.article_id for a in report.articles] == ["real.txt"]
    assert [(p.path, "without an article" in p.reason) for p in report.problems] == [("gone.txt.meta.yaml", True)]


# --------------------------------------------------------------------- in-text conventions


def test_published_lines_give_date_and_outlet_and_are_removed(tmp_path):
    text = (
        "Headline\nPublished: Dec 10, 2023\n\n" + PROSE + "\n\nPublished in The Express Tribune, December 11th, 2023."
    )
    article = read_one(write(tmp_path / "a.txt", text), tmp_path)
    assert article.date == "2023-12-10"  # the "Published <date>" line wins over the closing line
    assert article.source == "The Express Tribune"
    assert "Published" not in article.text
    assert article.text == PROSE


def test_closing_published_in_line_alone_gives_date(tmp_path):
    article = read_one(
        write(tmp_path / "a.txt", "Headline\n\n" + PROSE + "\n\nPublished in Dawn, EOS, December 10th, 2023"), tmp_path
    )
    assert (article.source, article.date) == ("Dawn", "2023-12-10")


def test_updated_line_is_used_only_without_a_published_date(tmp_path):
    article = read_one(write(tmp_path / "a.txt", "Headline\nUpdated 27 November 2023\n\n" + PROSE), tmp_path)
    assert article.date == "2023-11-27"
    assert "Updated" not in article.text


def test_published_words_inside_the_body_are_kept(tmp_path):
    body = (
        "Lead paragraph one.\n\nLead paragraph two.\n\nLead paragraph three.\n\n"
        "Published December 10, 2023\n\n"  # not near either end: article text, kept
        "Updated figures were released on Monday.\n\n"
        "Closing one.\n\nClosing two.\n\nClosing three."
    )
    article = read_one(write(tmp_path / "a.txt", "Headline\n\n" + body), tmp_path)
    assert article.date is None
    assert article.text == body


def test_unparseable_published_line_is_kept_as_text(tmp_path):
    article = read_one(write(tmp_path / "a.txt", "Headline\nPublished in print and online\n\nBody."), tmp_path)
    assert article.date is None and article.source is None
    assert article.text.startswith("Published in print and online")


def test_dateline_does_not_become_an_outlet(tmp_path):
    article = read_one(write(tmp_path / "a.txt", "Headline\n\nKARACHI:\n\nBody text."), tmp_path)
    assert article.source is None
    assert article.text == "KARACHI:\n\nBody text."


def test_setext_heading_title(tmp_path):
    article = read_one(write(tmp_path / "a.md", "The Title\n=========\n\nBody text."), tmp_path)
    assert article.title == "The Title" and article.text == "Body text."


# ------------------------------------------------------------------------ date normalisation


@pytest.mark.parametrize(
    "value, expected",
    [
        ("December 10th, 2023", "2023-12-10"),
        ("Dec 10, 2023", "2023-12-10"),
        ("Dec. 10, 2023", "2023-12-10"),
        ("10 December 2023", "2023-12-10"),
        ("10th December, 2023", "2023-12-10"),
        ("Sunday, December 10, 2023 08:45 PM PKT", "2023-12-10"),
        ("2023-12-10", "2023-12-10"),
        ("2023/12/10", "2023-12-10"),
        ("2023-11-27 08:45:59.000000000Z", "2023-11-27"),
        ("2023-11-27T08:45:59+00:00", "2023-11-27"),
        ("2023-11-27T23:45:59-05:00", "2023-11-27"),  # the date as written, no zone shifting
        ("25/12/2023", "2023-12-25"),
        (date(2023, 12, 10), "2023-12-10"),
        (datetime(2023, 12, 10, 5, 0), "2023-12-10"),
        ("10/12/2023", None),  # day-first or month-first? not guessed
        ("December 2023", None),  # no day
        ("2023", None),
        ("2023-02-30", None),
        ("junk", None),
        ("", None),
        (None, None),
        (20231210, None),
    ],
)
def test_normalize_date(value, expected):
    assert normalize_date(value) == expected


# ------------------------------------------------------------------------------- cleaning


def test_clean_text_normalizes_whitespace_conservatively():
    raw = "Line one.  \r\nLine two.\t\r\n\r\n\r\n\r\n  Indented paragraph.\rLast line.   \n\n"
    assert clean_text(raw) == "Line one.\nLine two.\n\n  Indented paragraph.\nLast line."


def test_clean_text_drops_comment_form_footers_only_at_the_end():
    footer = "\n\nLeave a Reply\n\nYour email address will not be published. Required fields are marked *\n\nComment *\n\nName *"
    assert clean_text("Body.\n\nMore body." + footer) == "Body.\n\nMore body."
    # "Leave a comment" followed by real text is not a form footer
    kept = "Body.\n\nLeave a comment\n\nWe read every one and reply within a day."
    assert clean_text(kept) == kept


def test_clean_text_drops_only_adjacent_caption_repeats():
    caption = "A man walks past a mural in Karachi | Reuters"
    text = f"Para one.\n\n {caption}\n{caption}\n\nPara two.\n\n{caption}"
    assert clean_text(text) == f"Para one.\n\n {caption}\n\nPara two.\n\n{caption}"
    structured = "Where to watch: Netflix\n\nShow two\n\nWhere to watch: Netflix\n\nYes\n\nYes"
    assert clean_text(structured) == structured  # non-adjacent or tiny repeats stay


def test_clean_text_keeps_unicode_punctuation():
    text = "“Quoted,” she said — it’s fine… ‘Really’."
    assert clean_text(text) == text


# ---------------------------------------------------------------------------- content hash


def test_content_hash_changes_with_text_and_metadata():
    article = Article(article_id="a.txt", title="T", text="Body.", path="a.txt")
    digest = content_hash(article)
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert content_hash(replace(article)) == digest
    assert content_hash(replace(article, text="Body!")) != digest
    assert content_hash(replace(article, date="2023-12-10")) != digest
    assert content_hash(replace(article, source="Dawn")) != digest
    assert content_hash(replace(article, title="T2")) != digest
