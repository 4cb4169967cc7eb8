"""``python -m bot eval faults``: the fault campaign of issue 10, replayed in one command.

* hostile files: a corpus with links out of the folder, link loops, deeply nested JSON,
  impossible dates, an oversized file, binary and non-UTF-8 files and a named pipe beside
  good articles; each hostile file must be reported by path, and the good ones indexed;
* corrupt index kinds: copies of a good build damaged one way each (chunk rows
  reordered, a flipped byte in the vectors file, a truncated one, a missing file, manifest
  garbage, an edited manifest, a ``current`` symlink loop); each must be refused on load;
* Telegram faults: 20 users ask at once through ``bot.faultproxy.FaultProxy`` (17 faults on
  sendMessage: HTTP 500s, dropped connections, delayed answers) in front of the tests' Bot
  API server; counted: answers delivered, duplicate sends, false apologies;
* leftovers: a ``.build-*.partial`` folder as a build killed while writing leaves it must be
  gone after the next build.

Everything runs in a temporary folder and on 127.0.0.1; the model is the real one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from bot.config import Settings

CAMPAIGN = ["500", "drop", "delay", "500", "ok", "drop", "500", "delay", "drop", "500",
            "ok", "delay", "500", "drop", "500", "delay", "drop", "500", "ok", "drop"]
GOOD_ARTICLES = {
    "water.md": "Council approves water plan\n\nThe city council approved the new water plan on Monday. Work begins soon.\n",
    "bridge.md": "New bridge opens\n\nThe new bridge over the river opened to traffic on Friday, the mayor said.\n",
}
SECRET = "TELEGRAM_BOT_TOKEN=123456789:SECRET-never-quote-me"
REBUILD_HINT = "python -m bot index"


def write_file(path: Path, content: str | bytes) -> Path:
    """A file with the given text (UTF-8) or bytes, folders created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def hostile_corpus(root: Path, max_bytes: int) -> tuple[Path, dict[str, str]]:
    """A corpus of good articles and hostile files; returns it and {hostile path: what it is}."""
    corpus, outside = root / "corpus", root / "outside"
    for name, text in GOOD_ARTICLES.items():
        write_file(corpus / name, text)
    write_file(outside / ".env", SECRET + "\n")
    write_file(outside / "secret.txt", "Secret headline\n\n" + SECRET + "\n")
    hostile = {}
    (corpus / "outside_link.txt").symlink_to(outside / "secret.txt")
    hostile["outside_link.txt"] = "link to a file outside the corpus"
    (corpus / "dotenv.md").symlink_to(outside / ".env")
    hostile["dotenv.md"] = "link to the .env outside the corpus"
    (corpus / "a.txt").symlink_to("b.txt")
    (corpus / "b.txt").symlink_to("a.txt")
    hostile["a.txt"] = hostile["b.txt"] = "symbolic link loop"
    depth = 100_000
    write_file(corpus / "deep.json", "[" * depth + "]" * depth)
    hostile["deep.json"] = "JSON nested 100,000 deep"
    write_file(corpus / "big.txt", "Big headline\n\n" + "word " * (max_bytes // 5 + 10))
    hostile["big.txt"] = "file above MAX_ARTICLE_BYTES"
    write_file(corpus / "nul.txt", b"Looks like text\n\n\x00\x01\x02 but holds NUL bytes\n")
    hostile["nul.txt"] = "binary file"
    write_file(corpus / "latin1.md", bytes(range(0x80, 0x100)) * 4)
    hostile["latin1.md"] = "not UTF-8"
    if hasattr(os, "mkfifo"):
        os.mkfifo(corpus / "pipe.txt")
        hostile["pipe.txt"] = "named pipe"
    # indexed, its impossible date dropped with a warning
    write_file(corpus / "bad_date.md", "---\ntitle: Impossible date\ndate: 2025-13-45\n---\n\nThe text itself is fine.\n")
    return corpus, hostile


def check_hostile_files(work: Path, settings: Settings, embedder) -> dict:
    from bot.indexing import build_index
    from bot.store import load_index

    corpus, hostile = hostile_corpus(work / "hostile", 10_000)
    index_settings = dataclasses.replace(settings, corpus_dir=corpus, index_dir=work / "hostile" / "index", max_article_bytes=10_000)
    report = build_index(index_settings, embedder, progress=False)
    reported = {p.path for p in report.problems}
    indexed = set(load_index(index_settings.index_dir).articles)
    expected = set(GOOD_ARTICLES) | {"bad_date.md"}
    leaked = [p.reason for p in report.problems if "SECRET" in p.reason]
    return {
        "hostile": len(hostile),
        "reported": len(reported & set(hostile)),
        "unreported": sorted(set(hostile) - reported),
        "good": len(expected),
        "indexed": len(indexed & expected),
        "hostile_indexed": sorted(indexed & set(hostile)),
        "secret_quoted": bool(leaked) or any(SECRET in a.text for a in load_index(index_settings.index_dir).articles.values()),
    }


def _segment_file(build: Path, name: str) -> Path:
    """A file of the build's first segment (where the rows live since index format 3)."""
    manifest = json.loads((build / "manifest.json").read_text(encoding="utf-8"))
    return build / "segments" / manifest["segments"][0]["name"] / name


def reorder_chunk_rows(path: Path) -> None:
    """Rotate the rows of a segment's chunks.npy by one: the same bytes and size, each row
    now naming another chunk's article and offsets (numpy loads it happily)."""
    rows = np.load(path, allow_pickle=False)
    np.save(path, np.concatenate([rows[1:], rows[:1]]), allow_pickle=False)


def _reorder_chunks(build: Path) -> None:
    reorder_chunk_rows(_segment_file(build, "chunks.npy"))


def _flip_vectors_byte(build: Path) -> None:
    path = _segment_file(build, "vectors.npy")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate_vectors(build: Path) -> None:
    path = _segment_file(build, "vectors.npy")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _remove_chunks(build: Path) -> None:
    _segment_file(build, "chunks.npy").unlink()


def _garbage_manifest(build: Path) -> None:
    (build / "manifest.json").write_bytes(b"\x00{not json at all")


def _edit_manifest(build: Path) -> None:
    path = build / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    first = next(iter(manifest["articles"]))
    manifest["articles"][first] = "0" * 64
    path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")


CORRUPTIONS = {
    "chunk rows reordered": _reorder_chunks,
    "a flipped byte in the vectors file": _flip_vectors_byte,
    "a truncated vectors file": _truncate_vectors,
    "chunks.npy missing": _remove_chunks,
    "manifest garbage": _garbage_manifest,
    "an edited manifest": _edit_manifest,
}


def check_corrupt_indexes(work: Path, settings: Settings, embedder) -> dict:
    from bot.errors import BotError
    from bot.indexing import build_index
    from bot.store import load_index

    corpus = work / "good" / "corpus"
    for name, text in GOOD_ARTICLES.items():
        write_file(corpus / name, text)
    good = dataclasses.replace(settings, corpus_dir=corpus, index_dir=work / "good" / "index")
    build_index(good, embedder, progress=False)
    kinds = {}
    for kind, damage in [*CORRUPTIONS.items(), ("a current symlink loop", None)]:
        index_dir = work / "corrupt" / f"{len(kinds)}"
        shutil.copytree(good.index_dir, index_dir, symlinks=True)
        if damage is None:
            (index_dir / "current").unlink()
            os.symlink("current", index_dir / "current")
        else:
            damage((index_dir / "current").resolve())
        try:
            load_index(index_dir)
            kinds[kind] = "loaded: would answer from it"
        except BotError as exc:
            kinds[kind] = "refused" if REBUILD_HINT in str(exc) else f"refused without the fix: {exc}"
        except Exception as exc:  # noqa: BLE001 - an unexpected crash is reported, not raised
            kinds[kind] = f"crashed: {type(exc).__name__}"
    return {"kinds": len(kinds), "refused": sum(v == "refused" for v in kinds.values()), "detail": kinds}


def check_leftovers(work: Path, settings: Settings, embedder) -> dict:
    from bot.indexing import build_index
    from bot.store import load_index

    good = dataclasses.replace(settings, corpus_dir=work / "good" / "corpus", index_dir=work / "good" / "index")
    stale = good.index_dir / ".build-20991231T235959-deadbeef.partial"  # what SIGKILL mid-write leaves
    (stale / "lexical").mkdir(parents=True)
    (stale / "vectors.faiss").write_bytes(b"half a file")
    write_file(good.corpus_dir / "late.md", "Late news\n\nA late article arrives after the killed build.\n")
    build_index(good, embedder, progress=False)
    left = sorted(p.name for p in good.index_dir.glob(".*partial"))
    return {"leftovers_after_next_build": len(left), "detail": left, "new_build_serves": "late.md" in load_index(good.index_dir).articles}


async def _telegram_campaign(answerer, delay: float) -> dict:
    from bot.faultproxy import FaultProxy
    from bot.loadtest import fake_bot_api_class, seed_questions
    from bot.telegram_app import ERROR_REPLY, build_application, serving

    questions = seed_questions()
    with fake_bot_api_class()() as server:
        with FaultProxy(f"http://127.0.0.1:{server.port}", delay=delay) as proxy:
            proxy.inject("sendMessage", *CAMPAIGN)
            settings = dataclasses.replace(
                answerer.settings, telegram_bot_token=server.token, telegram_base_url=proxy.url + "/bot",
                index_poll_seconds=0, questions_per_minute=0, busy_notice_seconds=1e9,
            )
            users = [server.user(800_000 + i, f"User{i}") for i in range(20)]
            chats = [server.private_chat(u) for u in users]
            async with serving(build_application(settings, answerer)):
                for i, (user, chat) in enumerate(zip(users, chats)):
                    server.send_text(chat, user, questions[i % len(questions)])
                try:
                    await server.async_wait_for(
                        lambda s: all(s.sent_messages(c["id"]) for c in chats), 4 * delay + 60, "a reply to everyone"
                    )
                except AssertionError:
                    pass  # counted below as not delivered
                await asyncio.sleep(1.0)  # a wrong retry or apology would show up now
            # leaving ``serving`` waited for every send in flight
            delivered = duplicates = false_apologies = apologies = 0
            for chat in chats:
                texts = [m.text for m in server.sent_messages(chat["id"])]
                answers = [t for t in texts if t != ERROR_REPLY]
                sends = [c for c in server.calls("sendMessage") if c.status == 200 and int(c.params["chat_id"]) == chat["id"]]
                delivered += bool(answers)
                duplicates += max(0, len(sends) - 1)
                apologies += ERROR_REPLY in texts
                false_apologies += bool(answers) and ERROR_REPLY in texts
            return {
                "questions": len(chats),
                "faults": dict(proxy.injected),
                "faults_total": sum(proxy.injected.values()),
                "delivered": delivered,
                "duplicates": duplicates,
                "apologies": apologies,
                "false_apologies": false_apologies,
                "delay_seconds": delay,
            }


def eval_faults(settings: Settings, delay: float = 20.0, answerer=None) -> dict:
    from bot.evaluation import _seed_answerer

    answerer = answerer or _seed_answerer(settings)
    embedder = answerer.embedder
    with tempfile.TemporaryDirectory(prefix="newsbot-faults-") as tmp:
        work = Path(tmp)
        report = {
            "hostile_files": check_hostile_files(work, settings, embedder),
            "corrupt_index": check_corrupt_indexes(work, settings, embedder),
            "leftovers": check_leftovers(work, settings, embedder),
            "telegram": asyncio.run(_telegram_campaign(answerer, delay)),
        }
    h, c, t, k = report["hostile_files"], report["corrupt_index"], report["telegram"], report["leftovers"]
    report["passed"] = (
        h["reported"] == h["hostile"] and h["indexed"] == h["good"] and not h["hostile_indexed"] and not h["secret_quoted"]
        and c["refused"] == c["kinds"]
        and t["delivered"] == t["questions"] and t["duplicates"] == 0 and t["false_apologies"] == 0
        and k["leftovers_after_next_build"] == 0 and k["new_build_serves"]
    )
    return report


def format_faults(report: dict) -> str:
    h, c, t, k = report["hostile_files"], report["corrupt_index"], report["telegram"], report["leftovers"]
    lines = [
        "Fault campaign (issue 10), in a temporary folder and on 127.0.0.1",
        "",
        f"  hostile files reported by path   {h['reported']}/{h['hostile']}" + (f"  unreported: {h['unreported']}" if h["unreported"] else ""),
        f"  good articles indexed            {h['indexed']}/{h['good']}" + (f"  hostile indexed: {h['hostile_indexed']}" if h["hostile_indexed"] else ""),
        f"  a secret outside quoted          {'YES' if h['secret_quoted'] else 'no'}",
        f"  corrupt index kinds refused      {c['refused']}/{c['kinds']}",
    ]
    lines += [f"      {kind}: {outcome}" for kind, outcome in c["detail"].items()]
    faults = ", ".join(f"{n} {kind}" for kind, n in sorted(t["faults"].items()))
    lines += [
        f"  Telegram faults injected         {t['faults_total']} on sendMessage ({faults}; delays {t['delay_seconds']:.0f} s)",
        f"  answers delivered                {t['delivered']}/{t['questions']}",
        f"  duplicate sends                  {t['duplicates']}",
        f"  false apologies                  {t['false_apologies']}  (apologies in all: {t['apologies']})",
        f"  leftovers after a killed build   {k['leftovers_after_next_build']} after the next build"
        + ("" if k["new_build_serves"] else "  (the next build does not serve!)"),
        "",
        "  targets: every hostile file reported, the rest indexed; every corrupt kind refused; "
        "20/20 delivered, 0 duplicates, 0 false apologies; 0 leftovers",
        f"  {'PASS' if report['passed'] else 'MISSED'}",
    ]
    return "\n".join(lines)
