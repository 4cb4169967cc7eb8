"""The command line: thin parsing around the core, errors printed, never tracebacks.

    python -m bot index [--full] [--json] [--strict]   build or update the index
    python -m bot ask "question" ... [--json]          answer questions (or from stdin)
    python -m bot chat                                 interactive console
    python -m bot sources                              list the articles
    python -m bot run                                  the Telegram bot
    python -m bot start                                update the index, then Telegram or chat
    python -m bot add URL|FILE ... [--json]            add articles by link or file, then update the index
    python -m bot update [--json]                      poll the feeds, add new items, update the index
    python -m bot eval seed|multihop|scale             retrieval quality, growth costs
    python -m bot eval encoder                         the ONNX int8 question encoder against torch
    python -m bot eval load [--users N --questions M]  a crowd of users against the bot and an echo bot
    python -m bot eval faults                          the fault campaign: hostile files, damage, Bot API faults
    python -m bot eval stories                         the story groups of MultiHop-RAG's articles, for a check by hand
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from pathlib import Path

from bot.config import Settings
from bot.errors import BotError
from bot.formatting import answer_to_dict, answer_to_text, citation_parts
from bot.retrieval import Filters

log = logging.getLogger("bot")


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--corpus", type=Path, help="article folder (default: CORPUS_DIR or corpus/)")
    common.add_argument("--index", type=Path, help="index folder (default: INDEX_DIR or index/)")
    common.add_argument("--model", help="sentence-transformers model name or path (default: EMBEDDING_MODEL)")
    common.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    return common


def _filter_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", action="append", default=[], help="only articles from this outlet (repeatable)")
    parser.add_argument(
        "--since", help="only articles published on or after this date: YYYY, YYYY-MM, YYYY-MM-DD or e.g. 'Dec 1 2023' (a month or year: its first day)"
    )
    parser.add_argument(
        "--until", help="only articles published on or before this date: YYYY, YYYY-MM, YYYY-MM-DD or e.g. 'Dec 2023' (a month or year: its last day)"
    )


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = argparse.ArgumentParser(prog="python -m bot", description="Answers questions about a news corpus, with citations.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    index = commands.add_parser("index", parents=[common], help="build or update the index (only new or changed articles are embedded)")
    index.add_argument("--full", action="store_true", help="rebuild from scratch, embedding everything")
    index.add_argument("--json", action="store_true", help="print what was done as one JSON object")
    index.add_argument("--strict", action="store_true", help="exit non-zero when any article could not be read")

    ask = commands.add_parser("ask", parents=[common], help="answer questions given as arguments, or one per line on stdin")
    ask.add_argument("questions", nargs="*", metavar="QUESTION")
    ask.add_argument("--top-k", type=int, help="passages per answer (default: TOP_K or 3)")
    ask.add_argument("--json", action="store_true", help="one JSON object per question, one per line")
    _filter_options(ask)

    chat = commands.add_parser("chat", parents=[common], help="interactive console chat (Ctrl-D to leave)")
    chat.add_argument("--top-k", type=int)
    _filter_options(chat)

    commands.add_parser("sources", parents=[common], help="list the articles in the index")
    commands.add_parser("run", parents=[common], help="serve the Telegram bot (needs TELEGRAM_BOT_TOKEN)")
    commands.add_parser("start", parents=[common], help="update the index, then serve Telegram if a token is set, else open the chat")

    add = commands.add_parser("add", parents=[common], help="add articles by link (http/https) or file, then update the index")
    add.add_argument("items", nargs="+", metavar="URL|FILE")
    add.add_argument("--json", action="store_true", help="print what was done as one JSON object")
    update = commands.add_parser("update", parents=[common], help="poll the feeds (FEED_URLS, feeds.txt), add new items, update the index")
    update.add_argument("--json", action="store_true", help="print what was done as one JSON object")

    evaluate = commands.add_parser("eval", parents=[common], help="measure retrieval quality")
    evaluate.add_argument(
        "suite", choices=["seed", "multihop", "build", "conversation", "load", "faults", "intake", "update", "scale", "stories", "encoder"],
        help="seed gold set, MultiHop-RAG, build throughput, the conversation gold set (answers a reader meets), "
        "load (a crowd of users against the bot and an echo bot, on 127.0.0.1), "
        "faults (hostile files, damaged indexes, Bot API faults, killed builds), "
        "article extraction from news pages (intake), the wall time of a feed update on the benchmark index (update), "
        "what growing the archive costs (scale: updates, load, memory, latency at 609 articles and synthetic sizes), "
        "the groups of articles reporting one story (stories), "
        "or the ONNX int8 question encoder against torch: latency, cosine, MultiHop-RAG and seed quality (encoder)",
    )
    evaluate.add_argument("--sizes", help="scale: comma-separated sizes, 609 for MultiHop-RAG, others synthetic chunks "
                          "(default: 609,10000,100000)")
    evaluate.add_argument("--split", choices=["dev", "test", "all"], default="test", help="MultiHop-RAG questions to score")
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON")
    evaluate.add_argument("--benchmark-dir", type=Path, help="MultiHop-RAG folder (default: ../shared/benchmarks/multihop-rag)")
    evaluate.add_argument("--limit", type=int, help="multihop: score only the first N questions; build: use the first N articles")
    evaluate.add_argument("--no-cost", action="store_true", help="conversation: skip the answer-cost benchmark")
    evaluate.add_argument(
        "--gold", type=Path,
        help="conversation: the dialogues to score (default tests/gold/conversation.json; tests/gold/conversation_heldout.json "
        "was written apart from the tuning)",
    )  # fmt: skip
    evaluate.add_argument("--users", type=int, default=100, help="load: simulated users asking at once (at most 1000)")
    evaluate.add_argument("--questions", type=int, default=5, help="load: questions per user, each sent when the last is answered")
    evaluate.add_argument("--fault-delay", type=float, default=20.0, help="faults: seconds the proxy holds back a delayed answer")
    evaluate.add_argument("--reply-timeout", type=float, default=60.0, help="load: seconds without a reply before a question counts as lost")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    return settings.with_overrides(
        corpus_dir=getattr(args, "corpus", None),
        index_dir=getattr(args, "index", None),
        embedding_model=getattr(args, "model", None),
        strict=True if getattr(args, "strict", False) else None,
    )


def filters_from_args(args: argparse.Namespace) -> Filters:
    return Filters(sources=tuple(args.source), since=args.since, until=args.until)


def _questions(args: argparse.Namespace):
    if args.questions:
        yield from args.questions
        return
    for line in sys.stdin:
        if line.strip():
            yield line.strip()


def cmd_index(args: argparse.Namespace, settings: Settings) -> int:
    from bot.embedding import LazyEmbedder
    from bot.indexing import build_index

    embedder = LazyEmbedder(settings.embedding_model, settings.embedding_batch_size)  # a no-op run never loads it
    report = build_index(settings, embedder, full=args.full)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        print(report.describe())
    return 1 if (settings.strict and report.problems) else 0


def _answerer(settings: Settings, *, lazy_model: bool = False):
    from bot.service import QuestionAnswerer

    return QuestionAnswerer(settings, lazy_model=lazy_model).load()


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    filters = filters_from_args(args)  # a bad date is reported before the model loads
    answerer = _answerer(settings)
    first = True
    for question in _questions(args):
        answer = answerer.ask(question, args.top_k, filters=filters)
        if args.json:
            print(json.dumps(answer_to_dict(answer), ensure_ascii=False), flush=True)
        else:
            if not first:
                print("\n" + "─" * 60)
            print(f"Q: {question}\n")
            print(answer_to_text(answer), flush=True)
        first = False
    return 0


CHAT_HELP = """Ask about the articles in plain words: English, Roman Urdu or Urdu.
Follow up with "and what about Kamal?", "when was that?" or "why?": I say how I read it.
Commands: /help this text, /sources the articles, /more more passages, /reset start over, /quit leave."""


def cmd_chat(args: argparse.Namespace, settings: Settings) -> int:
    """The console chat: the same conversation as Telegram (QuestionAnswerer.reply)."""
    try:
        import readline  # noqa: F401  (arrow-key history for input())
    except ImportError:
        pass
    from bot.dialogue import Conversation

    filters = filters_from_args(args)
    answerer = _answerer(settings)
    summary = answerer.summary()
    print(f"Ask about {summary.articles} articles ({', '.join(summary.sources) or 'outlets unknown'}). /help for help, Ctrl-D to leave.")
    conversation = Conversation()
    while True:
        try:
            message = input("\nYou: ").strip()
        except EOFError:
            print()
            return 0
        if not message:
            continue
        if message.lower() in {"/quit", "/exit", "quit", "exit"}:
            return 0
        try:
            if answerer.reload_if_changed():  # an index rebuilt meanwhile, as the bot does
                print(f"(switched to the rebuilt index {answerer.build_id})")
        except BotError as exc:
            print(f"(a rebuilt index could not be loaded, still using the previous one: {exc})")
        reply = answerer.reply(conversation, message, top_k=args.top_k, filters=filters)
        print()
        print(_chat_reply_text(reply, answerer))


def _chat_reply_text(reply, answerer) -> str:
    from bot.formatting import NOTHING_TO_CONTINUE, RESET_REPLY

    if reply.kind == "answer":
        return answer_to_text(reply.answer)
    if reply.kind != "command":
        return reply.text or ""
    if reply.command in ("help", "start"):
        return CHAT_HELP
    if reply.command == "sources":
        return "\n".join(f"{n:3}. {' · '.join(citation_parts(a))}" for n, a in enumerate(answerer.articles(), 1))
    if reply.command == "reset":
        return RESET_REPLY
    if reply.answer is None:
        return NOTHING_TO_CONTINUE
    if not reply.answer.passages:
        return "There are no more passages about this."
    return answer_to_text(reply.answer, lead=False)


def cmd_sources(args: argparse.Namespace, settings: Settings) -> int:
    answerer = _answerer(settings, lazy_model=True)  # listing needs no model
    for number, article in enumerate(answerer.articles(), 1):
        print(f"{number:3}. {' · '.join(citation_parts(article))}")
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    settings.require_token()
    from bot.telegram_app import run_bot

    run_bot(settings)
    return 0


def cmd_start(args: argparse.Namespace, settings: Settings) -> int:
    """What the README's run command does: index if needed, then Telegram or the console."""
    from bot.indexing import index_is_stale

    if index_is_stale(settings):
        print("Updating the index from", settings.corpus_dir, "...", flush=True)
        args.full, args.json = False, False
        cmd_index(args, settings)
    if settings.telegram_configured:
        return cmd_run(args, settings)
    print("No TELEGRAM_BOT_TOKEN set (environment or .env): opening the console chat instead.")
    args.top_k, args.source, args.since, args.until = None, [], None, None
    return cmd_chat(args, settings)


def _finish_intake(args: argparse.Namespace, settings: Settings, report) -> int:
    """Update the index when anything was stored (the build `index` runs), then report.

    Exit status 0 when every item was added, updated or already there; 1 when any failed."""
    import time

    if report.stored:
        from bot.service import QuestionAnswerer

        started = time.perf_counter()
        answerer = QuestionAnswerer(settings)
        answerer.rebuild()
        report.record_index(answerer.serving.index.chunks, time.perf_counter() - started)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        print(report.describe())
    return 1 if report.failures or any(f.status == "failed" for f in report.feeds) else 0


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    from bot.ingest import Intake

    return _finish_intake(args, settings, Intake(settings).add(args.items))


def cmd_update(args: argparse.Namespace, settings: Settings) -> int:
    from bot.ingest import Intake
    from bot.ingest.feeds import feed_urls

    if not feed_urls(settings):
        print(f"No feeds: list them in {settings.feeds_file} (one URL a line) or FEED_URLS (see .env.example).")
        return 0
    return _finish_intake(args, settings, Intake(settings).update_feeds())


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from bot.evaluation import run_eval

    return run_eval(args, settings)


COMMANDS = {
    "index": cmd_index,
    "ask": cmd_ask,
    "chat": cmd_chat,
    "sources": cmd_sources,
    "run": cmd_run,
    "start": cmd_start,
    "eval": cmd_eval,
    "add": cmd_add,
    "update": cmd_update,
}


NOISY_LIBRARIES = ("sentence_transformers", "transformers", "httpx", "httpcore", "bm25s", "faiss")


class QuietLibraries(logging.Filter):
    """Drops library records below WARNING (they show with -v)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        return not any(record.name == name or record.name.startswith(name + ".") for name in NOISY_LIBRARIES)


def log_level(settings: Settings, *, verbose: bool, serves_telegram: bool) -> int:
    """-v: DEBUG. Else LOG_LEVEL when it is set (environment or .env), for every command.
    Unset: INFO for the Telegram bot (a service), WARNING for console commands (quiet output)."""
    if verbose:
        return logging.DEBUG
    if settings.log_level:
        return logging.getLevelName(settings.log_level.strip().upper())
    return logging.INFO if serves_telegram else logging.WARNING


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = None
    try:
        settings = settings_from_args(args)
        serves_telegram = args.command == "run" or (args.command == "start" and settings.telegram_configured)
        logging.basicConfig(
            level=log_level(settings, verbose=args.verbose, serves_telegram=serves_telegram),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        if not args.verbose:
            # Library chatter (weight loading bars, HTTP request lines) is not for users. A filter
            # on the handlers, not a logger level: bm25s sets its own logger to DEBUG on import.
            for handler in logging.getLogger().handlers:
                handler.addFilter(QuietLibraries())
        return COMMANDS[args.command](args, settings)
    except BotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. piped into `head`
        return 0
    except Exception as exc:  # a bug: one line for the user, the traceback with -v
        token = _token_to_hide(settings)
        if args.verbose:  # the traceback, with the token taken out (PTB's messages quote it)
            print(_redact(traceback.format_exc(), token), end="", file=sys.stderr)
            return 1
        message = " ".join(_redact(str(exc), token).split())
        print(f"error: unexpected {type(exc).__name__}: {message} (run again with -v for details)", file=sys.stderr)
        return 1


def _token_to_hide(settings: Settings | None) -> str:
    """The bot token from the settings, or straight from the environment if they failed to load."""
    import os

    if settings is not None:
        return settings.telegram_bot_token.strip()
    return os.environ.get("TELEGRAM_BOT_TOKEN", "").strip()


def _redact(text: str, token: str) -> str:
    """``text`` with the bot token (and its secret half alone) replaced."""
    if not token:
        return text
    text = text.replace(token, "[redacted-token]")
    secret = token.partition(":")[2]
    return text.replace(secret, "[redacted-token]") if len(secret) >= 8 else text
