"""A question-answering bot over a news corpus: cited passages, no made-up answers.

Layers, lowest first: types -> corpus/chunking -> embedding -> store/lexical ->
indexing -> retrieval -> answering -> service -> formatting -> cli, telegram_app.
Importing the package is cheap: models and indexes load only when asked for.
"""

import os

# OpenMP workers (torch, FAISS) spin while waiting by default. On a small shared machine
# that is catastrophic: embedding one question took 480 ms instead of 13-17 ms with the
# other core busy. Passive waiting must be chosen before the OpenMP runtime starts,
# i.e. before torch or faiss is imported, so it is set here.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
