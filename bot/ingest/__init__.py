"""Getting news in: links, feeds and uploads become ordinary files in ``corpus/``.

    fetch.py    polite, safe HTTP (robots.txt, per-host limit, size and time caps, no private addresses)
    web.py      a page's article text and metadata (trafilatura, htmldate)
    feeds.py    RSS/Atom lists, conditional polling state (SQLite), parsing (feedparser)
    records.py  the corpus files intake writes, and duplicates (same URL or same text)
    intake.py   ``Intake``: add links and files, update feeds; one outcome per item

Reading the corpus folder itself stays in ``bot/corpus.py``; the index is updated by the
edges through ``QuestionAnswerer.rebuild`` (the build ``python -m bot index`` runs).
"""

from bot.ingest.intake import ADDED, DEFERRED, DUPLICATE, FAILED, UPDATED, Intake, IntakeReport, Outcome

__all__ = ["ADDED", "DEFERRED", "DUPLICATE", "FAILED", "UPDATED", "Intake", "IntakeReport", "Outcome"]
