"""Builds read only the corpus files that changed: a scan cache remembers each file's
signature (size, mtime, ctime, inode, resolved path, sidecars) and the article ids and content
hashes it gave. What the cache must never do: serve a changed file, hide a bad one, or let a
link lead outside the corpus."""

from __future__ import annotations

import json
import os

import pytest

import bot.corpus as corpus
from bot.corpus import content_hash, load_corpus, scan_corpus
from bot.indexing import build_index
from bot.store import load_index
from tests.helpers import FakeEmbedder, make_settings, write, write_article

needs_symlinks = pytest.mark.skipif(not hasattr(os, "symlink") or os.name == "nt", reason="needs POSIX symlinks")


@pytest.fixture(autouse=True)
def settled_at_once(monkeypatch):
    """Files written by a test count as settled at once (the default waits 2 s, see below)."""
    monkeypatch.setattr(corpus, "UNSETTLED_SECONDS", 0.0)


@pytest.fixture
def reads(monkeypatch):
    """The corpus-relative paths of the files parsed, in order."""
    seen: list[str] = []
    real = corpus._read_file

    def counting(path, corpus_dir, root, max_bytes):
        seen.append(path.relative_to(corpus_dir).as_posix())
        return real(path, corpus_dir, root, max_bytes)

    monkeypatch.setattr(corpus, "_read_file", counting)
    return seen


def _corpus(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    for i in range(4):
        write_article(folder / ("sub" if i % 2 else ""), f"a{i}.md", f"Article {i}", f"Body of article {i}. It reports news.",
                      source="Wire", date="2024-01-0" + str(i + 1))
    write(folder / "many.json", json.dumps([{"title": f"Record {i}", "body": f"Record body {i}."} for i in range(3)]))
    return folder


def _hashes(folder):
    return {a.article_id: content_hash(a) for a in load_corpus(folder).articles}


def _scan(folder, cache, **options):
    scan = scan_corpus(folder, cache=cache, **options)
    scan.save()
    return scan


def test_unchanged_files_are_not_read_and_give_what_reading_gives(tmp_path, reads):
    folder, cache = _corpus(tmp_path), tmp_path / "scan.sqlite3"
    first = _scan(folder, cache)
    assert first.files_read == 5 and first.hashes == _hashes(folder)
    reads.clear()
    again = _scan(folder, cache)
    assert reads == [] and again.files_read == 0
    assert [e.article_id for e in again.entries] == [a.article_id for a in load_corpus(folder).articles]  # same order
    assert again.hashes == first.hashes
    # The text of an unchanged article is read only when asked for, from its file
    wanted = ["sub/a1.md", next(e.article_id for e in first.entries if e.path == "many.json")]
    reads.clear()
    assert [a.article_id for a in again.articles(wanted)] == [e.article_id for e in again.entries if e.article_id in wanted]
    assert sorted(reads) == ["many.json", "sub/a1.md"]


def test_a_changed_new_or_vanished_file_is_read_or_forgotten(tmp_path, reads):
    folder, cache = _corpus(tmp_path), tmp_path / "scan.sqlite3"
    _scan(folder, cache)
    reads.clear()
    write_article(folder, "a0.md", "Article 0", "A changed body, longer than before.", source="Wire", date="2024-01-01")
    write_article(folder, "new.md", "New article", "Something new happened.")
    (folder / "sub" / "a3.md").unlink()
    scan = _scan(folder, cache)
    assert sorted(reads) == ["a0.md", "new.md"]
    expected = _hashes(folder)
    assert scan.hashes == expected and "sub/a3.md" not in scan.hashes
    reads.clear()
    assert _scan(folder, cache).hashes == expected and reads == []


def test_a_file_touched_in_place_is_read_again(tmp_path, reads):
    """Same size, same mtime put back: the ctime (which no one can set) still tells."""
    folder, cache = _corpus(tmp_path), tmp_path / "scan.sqlite3"
    _scan(folder, cache)
    path = folder / "a2.md"
    before = path.stat()
    path.write_text(path.read_text().replace("Body", "Bodz"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    reads.clear()
    scan = _scan(folder, cache)
    assert reads == ["a2.md"] and scan.hashes == _hashes(folder)


def test_a_sidecar_added_removed_or_edited_rereads_its_article(tmp_path, reads):
    folder, cache = _corpus(tmp_path), tmp_path / "scan.sqlite3"
    _scan(folder, cache)
    reads.clear()
    write(folder / "a2.md.meta.json", json.dumps({"source": "Other Wire"}))
    scan = _scan(folder, cache)
    assert reads == ["a2.md"] and scan.hashes == _hashes(folder)
    assert scan.articles(["a2.md"])[0].source == "Other Wire"
    reads.clear()
    write(folder / "a2.md.meta.json", json.dumps({"source": "Third Wire, longer"}))
    scan = _scan(folder, cache)
    assert reads == ["a2.md"] and scan.hashes == _hashes(folder)
    reads.clear()
    (folder / "a2.md.meta.json").unlink()
    scan = _scan(folder, cache)
    assert reads == ["a2.md"] and scan.hashes == _hashes(folder)


def test_bad_files_and_warnings_are_reported_on_every_scan(tmp_path, reads):
    folder, cache = _corpus(tmp_path), tmp_path / "scan.sqlite3"
    write(folder / "broken.json", "{not json")
    write(folder / "big.md", "Big\n\n" + "x" * 5000)
    write(folder / "baddate.md", "---\ntitle: Dated\ndate: 2025-13-45\n---\n\nA body with a bad date.\n")
    _scan(folder, cache, max_article_bytes=4000)
    for _ in range(2):
        reads.clear()
        scan = _scan(folder, cache, max_article_bytes=4000)
        assert {p.path for p in scan.problems} == {"broken.json", "big.md"}
        assert [w.path for w in scan.warnings] == ["baddate.md"]
        assert sorted(reads) == ["baddate.md", "big.md", "broken.json"]  # never remembered
    assert "baddate.md" in scan.hashes


def test_another_size_limit_reads_everything_again(tmp_path, reads):
    folder, cache = _corpus(tmp_path), tmp_path / "scan.sqlite3"
    _scan(folder, cache)
    reads.clear()
    scan = _scan(folder, cache, max_article_bytes=80)
    assert len(reads) == 5 and scan.problems  # the limit now excludes files the cache knew as good


def test_a_file_changed_moments_ago_is_not_remembered(tmp_path, reads, monkeypatch):
    """Timestamps tick coarsely: a file written within UNSETTLED_SECONDS of the scan could be
    rewritten without its signature moving, so the next scan reads it again."""
    monkeypatch.setattr(corpus, "UNSETTLED_SECONDS", 3600.0)
    folder, cache = _corpus(tmp_path), tmp_path / "scan.sqlite3"
    _scan(folder, cache)
    reads.clear()
    assert _scan(folder, cache).files_read == 5 and len(reads) == 5


@needs_symlinks
def test_a_link_retargeted_outside_the_corpus_is_reported_not_served_from_the_cache(tmp_path, reads):
    folder, cache = _corpus(tmp_path), tmp_path / "scan.sqlite3"
    write(tmp_path / "outside" / "secret.md", "Secret\n\nTOKEN=never-quote-me\n")
    write(folder / ".store" / "target.md", "Target\n\nAn article reached through a link.\n")  # hidden: not walked
    os.symlink(folder / ".store" / "target.md", folder / "via-link.md")
    assert "via-link.md" in _scan(folder, cache).hashes
    reads.clear()
    assert _scan(folder, cache).files_read == 0  # the link is remembered too
    write(folder / ".store" / "target.md", "Target\n\nWhat the link leads to has changed.\n")
    scan = _scan(folder, cache)
    assert reads == ["via-link.md"] and scan.hashes == _hashes(folder)
    os.unlink(folder / "via-link.md")
    os.symlink(tmp_path / "outside" / "secret.md", folder / "via-link.md")
    scan = _scan(folder, cache)
    assert "via-link.md" not in scan.hashes
    assert any(p.path == "via-link.md" and "outside the corpus" in p.reason for p in scan.problems)
    assert "never-quote-me" not in json.dumps([a.text for a in scan.parsed.values()])


def test_builds_read_only_what_changed_and_match_a_full_read(tmp_path, reads):
    folder = _corpus(tmp_path)
    settings = make_settings(tmp_path, folder)
    first = build_index(settings, FakeEmbedder(), progress=False)
    assert first.files_read == 5
    reads.clear()
    noop = build_index(settings, FakeEmbedder(), progress=False)
    assert reads == [] and not noop.changed_anything
    write_article(folder, "added.md", "Added", "An added article about the news.")
    added = build_index(settings, FakeEmbedder(), progress=False)
    assert reads == ["added.md"] and added.articles_added == ["added.md"] and added.files_read == 1
    # A full build needs every text: the files the cache knows are read again, once each
    reads.clear()
    full = build_index(settings, FakeEmbedder(), full=True, progress=False)
    assert sorted(reads) == sorted(["a0.md", "a2.md", "sub/a1.md", "sub/a3.md", "many.json", "added.md"])
    index = load_index(settings.index_dir)
    assert index.manifest["articles"] == _hashes(folder) and full.chunks_total == len(index.chunks)
    assert {a.article_id: a for a in load_corpus(folder).articles} == dict(index.articles)


def test_a_damaged_cache_is_ignored_and_rewritten(tmp_path, reads):
    folder, cache = _corpus(tmp_path), tmp_path / "scan.sqlite3"
    cache.write_bytes(b"this is not a database" * 100)
    assert _scan(folder, cache).hashes == _hashes(folder)
    reads.clear()
    assert _scan(folder, cache).files_read == 0 and reads == []


def test_a_cached_hash_the_file_no_longer_gives_fails_once_then_the_file_is_read_again(tmp_path, reads):
    """E.g. a parser library upgraded under an unchanged file: the build stops with a clear error
    and the next scan reads the file instead of trusting the cache forever."""
    import sqlite3

    from bot.errors import CorpusError

    folder, cache = _corpus(tmp_path), tmp_path / "scan.sqlite3"
    _scan(folder, cache)
    with sqlite3.connect(cache) as db:
        db.execute("UPDATE files SET articles = ? WHERE path = 'a0.md'", (json.dumps([["a0.md", "0" * 64]]),))
    scan = _scan(folder, cache)
    with pytest.raises(CorpusError, match="a0.md changed while the index was being built"):
        scan.articles(["a0.md"])
    reads.clear()
    scan = _scan(folder, cache)
    assert reads == ["a0.md"] and scan.hashes == _hashes(folder)
