"""The index refuses to answer from damaged or mixed builds, and builds do not trample each
other: checksums verified on load, one build per load, a build lock, leftovers of dead
builds removed. Mechanics only, so the fake embedder is enough."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from bot import store
from bot.errors import IndexCorruptError, IndexMismatchError
from bot.faulttest import reorder_chunk_rows
from bot.indexing import build_index, index_is_stale
from bot.store import current_build_id, load_index
from tests.helpers import FakeEmbedder, REPO, make_settings, small_corpus, write_article

REBUILD = "python -m bot index --full"


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path, small_corpus(tmp_path), CHUNK_TOKENS="40", CHUNK_OVERLAP_TOKENS="5")


@pytest.fixture
def built(settings):
    build_index(settings, FakeEmbedder(), progress=False)
    return settings


def _build_dir(settings):
    return (settings.index_dir / "current").resolve()


def _segment_file(settings, name: str) -> str:
    """The build-relative path of a file of the build's first (largest) segment."""
    manifest = json.loads((_build_dir(settings) / "manifest.json").read_text())
    return f"segments/{manifest['segments'][0]['name']}/{name}"


def _refused(settings, *fragments):
    """load_index must refuse, with a message naming the build, each fragment and the fix."""
    build = _build_dir(settings).name
    with pytest.raises(IndexCorruptError) as err:
        load_index(settings.index_dir)
    message = str(err.value)
    assert build in message, message
    for fragment in fragments:
        assert fragment in message, message
    assert REBUILD in message, message
    return message


# -- checksums ------------------------------------------------------------------------------


def test_manifest_lists_every_file_of_the_build_with_its_sha256(built):
    import hashlib

    folder = _build_dir(built)
    manifest = json.loads((folder / "manifest.json").read_text())
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["files"]) == on_disk
    names = ("vectors.npy", "chunks.npy", "texts.bin", "articles.jsonl", "terms.jsonl", "notes.jsonl", *store.POSTINGS_FILES)
    assert {_segment_file(built, n) for n in names} | {"vocabulary.json"} <= on_disk
    for name, entry in manifest["files"].items():
        data = (folder / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def test_reordered_chunks_are_refused_and_the_message_names_the_file(built):
    name = _segment_file(built, "chunks.npy")
    path = _build_dir(built) / name
    size = path.stat().st_size
    reorder_chunk_rows(path)  # same bytes, same count: only the order is wrong
    assert path.stat().st_size == size
    _refused(built, name, "checksum")


def test_a_changed_article_text_is_refused(built):
    # The texts stay on disk (memory-mapped) while serving, but are checked on load like the rest.
    name = _segment_file(built, "texts.bin")
    path = _build_dir(built) / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    _refused(built, name, "checksum")


def test_a_flipped_byte_in_the_vectors_file_is_refused(built):
    name = _segment_file(built, "vectors.npy")
    path = _build_dir(built) / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40  # inside the vector data: numpy itself would load it happily
    path.write_bytes(bytes(data))
    _refused(built, name)


def test_a_truncated_vectors_file_is_refused(built):
    name = _segment_file(built, "vectors.npy")
    path = _build_dir(built) / name
    path.write_bytes(path.read_bytes()[:-100])
    _refused(built, name, "truncated")


@pytest.mark.parametrize("name", ["chunks.npy", "texts.bin", "vectors.npy", "terms.jsonl", "postings_vocabulary.json", "postings_tf.npy",
                                  "vocabulary.json"])
def test_a_missing_file_is_refused(built, name):
    name = name if name == "vocabulary.json" else _segment_file(built, name)
    (_build_dir(built) / name).unlink()
    _refused(built, name, "missing")


def test_manifest_garbage_is_refused(built):
    (_build_dir(built) / "manifest.json").write_bytes(b"\x00{not json at all")
    _refused(built, "manifest.json", "not valid JSON")


def test_an_edited_manifest_is_refused(built):
    path = _build_dir(built) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["articles"]["a0.md"] = "0" * 64  # still valid JSON, still the right shape
    path.write_text(json.dumps(manifest, indent=2))
    _refused(built, "manifest.json")


def test_old_format_gets_the_rebuild_message_and_a_full_rebuild(built):
    path = _build_dir(built) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["format_version"] = 1
    for key in ("files", "manifest_sha256", "build_seq", "created_at"):
        manifest.pop(key)
    path.write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatchError, match=r"format version 1.*python -m bot index --full"):
        load_index(built.index_dir)
    assert index_is_stale(built, "fake-hash-64")
    embedder = FakeEmbedder()
    report = build_index(built, embedder, progress=False)  # incremental, but nothing is trusted
    assert report.full and report.chunks_embedded == report.chunks_total
    assert load_index(built.index_dir).build_seq >= 1


@pytest.mark.parametrize("links", [{"current": "current"}, {"current": "a", "a": "b", "b": "a"}])
def test_a_current_symlink_loop_gives_a_clean_message(built, links):
    index_dir = built.index_dir
    (index_dir / "current").unlink()
    for name, target in links.items():
        os.symlink(target, index_dir / name)
    with pytest.raises(IndexCorruptError) as err:
        load_index(index_dir)
    assert "symlink loop" in str(err.value) and REBUILD in str(err.value)
    assert current_build_id(index_dir) is None  # the bot's watcher polls this: no exception
    assert index_is_stale(built, "fake-hash-64")
    # The advertised fix works: a build replaces the looping link.
    build_index(built, FakeEmbedder(), full=True, progress=False)
    assert load_index(index_dir).build_id == current_build_id(index_dir)


# -- one build per load ----------------------------------------------------------------------


def test_load_reads_one_build_even_if_current_is_swapped_during_load(built, monkeypatch):
    index_dir = built.index_dir
    first = _build_dir(built)
    write_article(built.corpus_dir, "new.md", "New", "Breaking news about zebras in town. " * 30)
    build_index(built, FakeEmbedder(), progress=False)
    second = _build_dir(built)
    assert first != second and first.is_dir()  # the previous build is kept one generation

    (index_dir / "current").unlink()  # serve the first build again
    os.symlink(first.name, index_dir / "current")
    swaps = []
    real_read = store._read_file

    def read_and_swap(folder, name):
        data = real_read(folder, name)
        if name == "manifest.json":  # a rebuild swaps `current` right after the manifest is read
            target = second.name if os.readlink(index_dir / "current") == first.name else first.name
            tmp = index_dir / ".current.swap"
            os.symlink(target, tmp)
            os.replace(tmp, index_dir / "current")
            swaps.append(target)
        return data

    monkeypatch.setattr(store, "_read_file", read_and_swap)
    index = load_index(index_dir)
    monkeypatch.undo()

    assert swaps and os.readlink(index_dir / "current") != first.name  # the swap did happen mid-load
    assert index.path == first and index.build_id == first.name
    assert len(index.articles) == index.manifest["articles_total"] == 3 and "new.md" not in index.articles
    assert set(index.articles) == set(index.manifest["articles"])
    on_disk = np.load(first / _segment_file(built, "chunks.npy"))
    assert [(c.start, c.end) for c in index.chunks] == [(int(r["start"]), int(r["end"])) for r in on_disk]
    assert index.vectors.ntotal == len(on_disk) == index.manifest["chunks_total"]


# -- sequence numbers -------------------------------------------------------------------------


def test_build_sequence_increases_and_says_which_build_is_newer(built):
    seqs, indexes = [], []
    for i in range(3):
        if i:
            write_article(built.corpus_dir, "churn.md", "Churn", f"Text number {i} about churn.")
            build_index(built, FakeEmbedder(), progress=False)
        index = load_index(built.index_dir)
        seqs.append(index.build_seq)
        indexes.append(index)
    assert seqs == [1, 2, 3]
    assert indexes[0].created_at <= indexes[1].created_at <= indexes[2].created_at
    newest, previous, oldest = indexes[2], indexes[1], indexes[0]
    assert newest.supersedes(previous) and newest.supersedes(None)
    assert not previous.supersedes(newest)  # a slow load of an older build must not win
    assert not newest.supersedes(load_index(built.index_dir))  # the same build: nothing to do
    assert not oldest.path.exists()  # cleaned up; so an index wiped and rebuilt still takes over:
    assert oldest.supersedes(previous) is False and previous.supersedes(oldest) is True

    # The counter outlives a damaged manifest: the repairing build is still the newest.
    (newest.path / "manifest.json").write_text("garbage")
    build_index(built, FakeEmbedder(), progress=False)
    repaired = load_index(built.index_dir)
    assert repaired.build_seq == 4 and repaired.supersedes(previous)


# -- leftovers and the build lock ---------------------------------------------------------------


def test_a_stale_partial_folder_is_removed_by_the_next_build(built):
    stale = built.index_dir / ".build-20991231T235959-deadbeef.partial"
    (stale / "lexical").mkdir(parents=True)
    (stale / "vectors.faiss").write_bytes(b"half a file")  # fresh mtime: no age heuristic saves it
    build_index(built, FakeEmbedder(), progress=False)
    assert not stale.exists()
    assert not list(built.index_dir.glob(".*partial"))
    load_index(built.index_dir)


_KILLED_BUILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from bot import store
    from bot.indexing import build_index
    from tests.helpers import FakeEmbedder, make_settings

    def hang(*args):
        print("writing", flush=True)
        time.sleep(120)

    store.write_postings = hang
    root = Path(sys.argv[1])
    build_index(make_settings(root, root / "corpus", CHUNK_TOKENS="40", CHUNK_OVERLAP_TOKENS="5"), FakeEmbedder(), progress=False)
    """
)


def test_a_build_killed_while_writing_leaves_nothing_that_blocks_or_survives_the_next(built, tmp_path, monkeypatch):
    write_article(built.corpus_dir, "new.md", "New", "Fresh news about a killed build. " * 20)
    with subprocess.Popen(
        [sys.executable, "-c", _KILLED_BUILD, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True,
    ) as child:
        try:
            assert child.stdout.readline().strip() == "writing"
            partials = list(built.index_dir.glob(".build-*.partial"))
            assert len(partials) == 1
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
    assert partials[0].exists()  # SIGKILL: no cleanup ran
    monkeypatch.setattr(store, "BUILD_LOCK_TIMEOUT", 5.0)  # the dead child's lock is gone: no wait
    report = build_index(built, FakeEmbedder(), progress=False)
    assert report.articles_added == ["new.md"]
    assert not partials[0].exists() and not list(built.index_dir.glob(".*partial"))
    assert "new.md" in load_index(built.index_dir).articles


class _GatedEmbedder(FakeEmbedder):
    """Embeds only once the test opens the gate, so a build can be held mid-way."""

    def __init__(self):
        super().__init__()
        self.entered = threading.Event()
        self.gate = threading.Event()

    def embed(self, texts, *, show_progress=False):
        self.entered.set()
        assert self.gate.wait(30), "test never opened the gate"
        return super().embed(texts, show_progress=show_progress)


def _run(target, results, key):
    try:
        results[key] = target()
    except BaseException as exc:  # reported by the test thread
        results[key] = exc


def test_two_concurrent_builds_are_serialized(settings, caplog):
    caplog.set_level(logging.INFO)
    slow, second = _GatedEmbedder(), FakeEmbedder()
    results: dict = {}
    first_thread = threading.Thread(target=_run, args=(lambda: build_index(settings, slow, progress=False), results, 1), daemon=True)
    first_thread.start()
    assert slow.entered.wait(30)  # the first build holds the lock and is embedding
    second_thread = threading.Thread(target=_run, args=(lambda: build_index(settings, second, progress=False), results, 2), daemon=True)
    second_thread.start()
    deadline = time.monotonic() + 10
    while "another build is running; waiting" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    waiting = "another build is running; waiting" in caplog.text
    still_running = second_thread.is_alive()
    slow.gate.set()
    first_thread.join(30)
    second_thread.join(30)
    assert waiting and still_running, "the second build did not wait for the first"
    first, later = results[1], results[2]
    assert not isinstance(first, BaseException) and not isinstance(later, BaseException), results
    # The second build started from the first one's result: nothing left to do, nothing written.
    assert first.full and first.chunks_embedded == first.chunks_total > 0
    assert later.chunks_embedded == 0 and second.embedded_texts == [] and later.chunks_reused == first.chunks_total
    index = load_index(settings.index_dir)
    assert index.build_seq == 1 and str(index.path) == later.index_path == first.index_path
    assert not list(settings.index_dir.glob(".*partial"))


def test_a_build_that_waits_too_long_gives_up_with_a_clear_message(built, monkeypatch):
    import fcntl

    from bot.store import IndexBusyError

    monkeypatch.setattr(store, "BUILD_LOCK_TIMEOUT", 0.5)
    holder = os.open(built.index_dir / store.LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)  # a "live build" in another process holds the lock
        results: dict = {}
        thread = threading.Thread(target=_run, args=(lambda: build_index(built, FakeEmbedder(), progress=False), results, 1), daemon=True)
        started = time.monotonic()
        thread.start()
        thread.join(20)
        assert not thread.is_alive(), "the build waited past its timeout"
    finally:
        os.close(holder)
    assert isinstance(results[1], IndexBusyError) and "python -m bot index" in str(results[1])
    assert 0.4 < time.monotonic() - started < 10
    load_index(built.index_dir)  # the serving build is untouched


def test_loading_does_not_need_the_build_lock(built):
    """A build in progress never blocks the bot from loading the build that is serving."""
    with store.build_lock(built.index_dir):
        done = []
        thread = threading.Thread(target=lambda: done.append(load_index(built.index_dir)), daemon=True)
        thread.start()
        thread.join(20)
        assert done and np.isfinite(done[0].vectors_array()).all()


# -- the serving side -------------------------------------------------------------------------


def test_a_running_answerer_keeps_its_index_when_a_rebuilt_one_is_damaged(built, monkeypatch):
    """The watcher's reload: a damaged build is refused once and remembered (not re-read on
    every poll); the next good build is switched to; an older build never replaces a newer one."""
    from bot.service import QuestionAnswerer

    answerer = QuestionAnswerer(built, FakeEmbedder()).load()
    serving = answerer.build_id
    write_article(built.corpus_dir, "new.md", "Article new", "A new article about topic9 and more.", source="Wire")
    build_index(built, FakeEmbedder(), progress=False)
    reorder_chunk_rows(_build_dir(built) / _segment_file(built, "chunks.npy"))
    with pytest.raises(IndexCorruptError):
        answerer.reload_if_changed()
    assert answerer.build_id == serving
    reads = []
    monkeypatch.setattr("bot.service.load_index", lambda *a, **k: reads.append(a) or pytest.fail("re-read"))
    assert answerer.reload_if_changed() is False and reads == []  # remembered, not read again
    monkeypatch.undo()
    build_index(built, FakeEmbedder(), full=True, progress=False)
    assert answerer.reload_if_changed() is True and answerer.build_id != serving
    newer = answerer.serving.index
    older = load_index(built.index_dir)  # the same build: not newer, so not swapped in
    assert not older.supersedes(newer)
