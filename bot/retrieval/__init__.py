"""Finding the passages: dense (FAISS) and lexical (BM25) rankings, fused and tidied.

``Retriever.search`` (``retriever.py``) runs one question through these stages, in order:

1. read the question (``scoring.py``): the outlets, dates and parts it names (``bot.query``),
   its vector, BM25 of every row, and the rows the filters allow (``filters.py``: outlet,
   date range, applied inside both searches);
2. candidates (``candidates.py``): each side's best rows (FAISS nearest, BM25 best) and the
   rows of the outlets and dates the question names, so later stages never walk every row;
3. fuse and boost (``scoring.py``): a weighted fusion of the two on a common 0..1 scale
   (naive reciprocal-rank fusion measured *worse* than BM25 alone on news, so the weights are
   explicit and tuned), named outlets and dates lift their articles, and a compound
   question's parts are scored too so that each part gets evidence in the selection;
4. select (``selection.py``): near-duplicate chunks (syndicated copies, overlaps) collapsed,
   a small penalty for piling many passages of one article on top when others score close,
   adjacent chunks of one article merged while they fit one passage;
5. fit passages (``passages.py``): each passage placed on the sentences of its article that
   best answer, filled to the cap, and each page ordered by its own evidence.

``params.py`` holds every tuned number; ``rows.py`` the per-row tables all stages look up.
"""

from bot.retrieval.filters import DATE_FORMS, DateFilterError, Filters, parse_date_bound
from bot.retrieval.params import RetrievalParams
from bot.retrieval.retriever import Retriever

__all__ = ["DATE_FORMS", "DateFilterError", "Filters", "RetrievalParams", "Retriever", "parse_date_bound"]
