"""A question-answering bot over a news corpus: cited passages, no made-up answers.

Layers, lowest first: types -> corpus/chunking -> embedding -> store/lexical ->
indexing -> retrieval -> answering -> service -> formatting -> cli, telegram_app.
Importing the package is cheap: models and indexes load only when asked for.
"""

__version__ = "0.1.0"
