"""The Telegram adapter: the only module that imports ``telegram``.

Flat async handlers that parse the update, call the core (in a thread: embedding and
search are blocking CPU work), and render with ``telegram_html``. All wiring is in
``build_application``. One error handler logs with the traceback and apologises to the
user; a stack trace never reaches a chat, and the token never reaches a log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from telegram import (
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    Update,
)
from telegram.constants import ChatAction, ChatType, ParseMode
from telegram.error import BadRequest, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.config import Settings
from bot.errors import BotError
from bot.service import QuestionAnswerer
from bot.telegram_html import escape, render_answer, render_full_passage, render_more, render_sources_page
from bot.types import Answer, Passage

log = logging.getLogger(__name__)

SOURCES_PER_PAGE = 8
EXAMPLE_QUESTIONS = (
    "Who leads the Bahadurabad group?",
    "When did the PSP merge into the MQM-P?",
    "Who is the mayor of Karachi?",
)
COMMANDS = (
    ("start", "What I know about, with example questions"),
    ("help", "How to ask and what the citations mean"),
    ("sources", "The articles I answer from"),
    ("ask", "Ask a question (in groups: /ask your question)"),
    ("reindex", "Admins: update the index from the corpus"),
)
NON_TEXT_REPLY = "I can only read text questions. Ask me something about the articles, for example: “{example}”"
EDITED_REPLY = "I answer new messages only: please send the corrected question again as a new message."
EMPTY_REPLY = "Please type a question in words, for example: “{example}”"
ERROR_REPLY = "Sorry, something went wrong while answering. Please try again in a moment."
REFUSED_REPLY = "Sorry, this bot is private. Ask its owner to add you if you need access."
EXPIRED_REPLY = "This answer has expired; please ask the question again."


# -- small bounded state ------------------------------------------------------------------


class BoundedDict(OrderedDict):
    """An LRU dict with a size cap and an optional age limit per entry."""

    def __init__(self, max_items: int, max_age: float | None = None):
        super().__init__()
        self.max_items = max_items
        self.max_age = max_age

    def put(self, key, value) -> None:
        self[key] = (time.monotonic(), value)
        self.move_to_end(key)
        while len(self) > self.max_items:
            self.popitem(last=False)

    def fetch(self, key):
        entry = self.get(key)
        if entry is None:
            return None
        stamp, value = entry
        if self.max_age is not None and time.monotonic() - stamp > self.max_age:
            del self[key]
            return None
        self.move_to_end(key)
        return value


class QuestionRateLimiter:
    """At most N questions per user per rolling minute."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self._times: BoundedDict = BoundedDict(10_000)

    def wait_seconds(self, user_id: int) -> int:
        """0 when the user may ask now (and counts the question), else seconds to wait."""
        if self.per_minute <= 0:
            return 0
        now = time.monotonic()
        times: deque = self._times.fetch(user_id) or deque()
        while times and now - times[0] >= 60:
            times.popleft()
        if len(times) >= self.per_minute:
            return max(1, int(60 - (now - times[0])) + 1)
        times.append(now)
        self._times.put(user_id, times)
        return 0


@dataclass
class AnswerState:
    """What the buttons under one answer need, kept in memory under a short key."""

    question: str
    previous_question: str | None
    force_context: bool
    shown: int
    passages: dict[int, Passage] = field(default_factory=dict)


@dataclass
class BotState:
    settings: Settings
    answerer: QuestionAnswerer
    rate_limiter: QuestionRateLimiter
    # chat id -> last question searched (follow-ups); bounded in chats and in age
    chat_memory: BoundedDict = field(default_factory=lambda: BoundedDict(5_000, max_age=30 * 60))
    # (chat id, bot message id) -> question it answered (a reply to it is a follow-up)
    answered_messages: BoundedDict = field(default_factory=lambda: BoundedDict(20_000, max_age=24 * 3600))
    answers: BoundedDict = field(default_factory=lambda: BoundedDict(5_000, max_age=24 * 3600))
    refused: BoundedDict = field(default_factory=lambda: BoundedDict(10_000))
    rebuild_task: asyncio.Task | None = None
    watcher_task: asyncio.Task | None = None
    examples: tuple[str, ...] = EXAMPLE_QUESTIONS


def _state(context: ContextTypes.DEFAULT_TYPE) -> BotState:
    return context.application.bot_data["state"]


# -- token hygiene --------------------------------------------------------------------------


class TokenRedactingFilter(logging.Filter):
    """Replaces the bot token in every log record (httpx logs request URLs, which contain it)."""

    def __init__(self, token: str):
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        if self.token:
            message = record.getMessage()
            if self.token in message:
                record.msg, record.args = message.replace(self.token, "[redacted-token]"), None
            if record.exc_info and record.exc_info[1] is not None and self.token in str(record.exc_info[1]):
                record.exc_text = logging.Formatter().formatException(record.exc_info).replace(self.token, "[redacted-token]")
        return True


def install_token_redaction(token: str) -> TokenRedactingFilter:
    """Attach the redactor to every root handler (filters on loggers miss propagated records)."""
    redactor = TokenRedactingFilter(token)
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in root.handlers:
        handler.addFilter(redactor)
    # httpx logs every request line, URL (and so token) included, at INFO.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return redactor


# -- access ---------------------------------------------------------------------------------


async def _allowed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> bool:
    """Allow-lists: a listed user anywhere, or anyone in a listed chat. Empty lists: everyone."""
    settings = _state(context).settings
    users, chats = settings.allowed_user_ids, settings.allowed_chat_ids
    if not users and not chats:
        return True
    user, chat = update.effective_user, update.effective_chat
    if (user and user.id in users) or (chat and chat.id in chats):
        return True
    who = user.id if user else None
    log.warning("refused update from user %s in chat %s (not in the allow-lists)", who, chat.id if chat else None)
    state = _state(context)
    key = (who, chat.id if chat else None)
    if state.refused.fetch(key) is None:  # refuse politely once, then stay quiet
        state.refused.put(key, True)
        if update.callback_query:
            await update.callback_query.answer(REFUSED_REPLY)
        elif update.effective_message and chat and chat.type == ChatType.PRIVATE:
            await update.effective_message.reply_text(REFUSED_REPLY)
    elif update.callback_query:
        await update.callback_query.answer()
    return False


# -- rendering helpers ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def typing(context: ContextTypes.DEFAULT_TYPE, chat_id: int):
    """Show "typing…" at once and keep it alive (it lapses after ~5 s) while we work."""

    async def keep_alive():
        while True:
            with contextlib.suppress(TelegramError):
                await context.bot.send_chat_action(chat_id, ChatAction.TYPING)
            await asyncio.sleep(4)

    task = asyncio.create_task(keep_alive())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _keyboard(key: str, answer: Answer, more: bool) -> InlineKeyboardMarkup | None:
    """Per source "Full [n]" and "Open [n]", then "More sources". Callback data stays tiny."""
    rows = []
    full = [InlineKeyboardButton(f"Full [{p.rank}]", callback_data=f"f:{key}:{p.rank}") for p in answer.passages]
    if full:
        rows.append(full)
    opened = [
        InlineKeyboardButton(f"Open [{p.rank}]", url=p.article.url)
        for p in answer.passages
        if p.article.url and p.article.url.startswith(("http://", "https://"))
    ]
    if opened:
        rows.append(opened)
    if more:
        rows.append([InlineKeyboardButton("More sources", callback_data=f"m:{key}")])
    return InlineKeyboardMarkup(rows) if rows else None


async def _send_parts(message: Message, parts: list[str], markup: InlineKeyboardMarkup | None, quote: bool) -> Message:
    """Send an answer split in parts; the buttons go under the last part."""
    sent = None
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        sent = await message.reply_text(
            part,
            parse_mode=ParseMode.HTML,
            reply_markup=markup if last else None,
            link_preview_options=LinkPreviewOptions(is_disabled=True),
            do_quote=quote and i == 0,
        )
    return sent


def _example(context: ContextTypes.DEFAULT_TYPE) -> str:
    return _state(context).examples[0]


# -- questions ----------------------------------------------------------------------------


async def answer_question(update: Update, context: ContextTypes.DEFAULT_TYPE, question: str) -> None:
    """Answer one question in the chat it came from: typing, core in a thread, HTML reply."""
    state = _state(context)
    message = update.effective_message
    chat = update.effective_chat
    user = update.effective_user
    if not re.search(r"\w", question):
        await message.reply_text(EMPTY_REPLY.format(example=_example(context)))
        return
    wait = state.rate_limiter.wait_seconds(user.id if user else chat.id)
    if wait:
        await message.reply_text(f"You are asking faster than I can keep up: please wait {wait} seconds.")
        return

    previous, force = None, False
    replied = message.reply_to_message
    if replied and replied.from_user and replied.from_user.id == context.bot.id:
        previous = state.answered_messages.fetch((chat.id, replied.message_id))
        force = previous is not None
    elif chat.type == ChatType.PRIVATE:
        previous = state.chat_memory.fetch(chat.id)

    async with typing(context, chat.id):
        answer = await asyncio.to_thread(
            state.answerer.ask, question, state.settings.top_k, previous_question=previous, force_context=force
        )
    key = secrets.token_urlsafe(6)
    quote = chat.type != ChatType.PRIVATE
    if not answer.found:
        await _send_parts(message, render_answer(answer), None, quote)
        return
    state.answers.put(
        key,
        AnswerState(question, previous, force, len(answer.passages), {p.rank: p for p in answer.passages}),
    )
    sent = await _send_parts(message, render_answer(answer), _keyboard(key, answer, more=True), quote)
    searched = answer.retrieval_query or question
    state.answered_messages.put((chat.id, sent.message_id), searched)
    state.chat_memory.put(chat.id, searched)


def _mentions_bot(message: Message, username: str) -> bool:
    return bool(username) and f"@{username.lower()}" in (message.text or "").lower()


def _strip_mention(text: str, username: str) -> str:
    return re.sub(rf"@{re.escape(username)}\b", " ", text, flags=re.IGNORECASE).strip()


async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A text message: always answered in private; in groups only when addressed to the bot."""
    message = update.effective_message
    chat = update.effective_chat
    username = context.bot.username or ""
    if chat.type != ChatType.PRIVATE:
        replied = message.reply_to_message
        to_bot = replied is not None and replied.from_user is not None and replied.from_user.id == context.bot.id
        if not (to_bot or _mentions_bot(message, username)):
            return  # group chatter is not for us
    if not await _allowed(update, context):
        return
    await answer_question(update, context, _strip_mention(message.text or "", username))


async def ask_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/ask <question>: the way to ask in groups without mentioning the bot."""
    if not await _allowed(update, context):
        return
    question = " ".join(context.args or [])
    if not question:
        await update.effective_message.reply_text(f"Usage: /ask your question, for example /ask {_example(context)}")
        return
    await answer_question(update, context, question)


async def on_unsupported(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Stickers, photos, voice...: a short instruction in private chats, silence in groups."""
    chat = update.effective_chat
    message = update.effective_message
    if chat.type != ChatType.PRIVATE:
        replied = message.reply_to_message
        if not (replied and replied.from_user and replied.from_user.id == context.bot.id):
            return
    if not await _allowed(update, context):
        return
    await message.reply_text(NON_TEXT_REPLY.format(example=_example(context)))


async def on_edited(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if update.effective_chat.type != ChatType.PRIVATE or not await _allowed(update, context):
        return
    await update.effective_message.reply_text(EDITED_REPLY)


# -- commands -----------------------------------------------------------------------------


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """What the bot knows about, and example questions to tap."""
    if not await _allowed(update, context):
        return
    state = _state(context)
    summary = await asyncio.to_thread(state.answerer.summary)
    span = ""
    if summary.first_date:
        span = f", published {summary.first_date} to {summary.last_date}" if summary.first_date != summary.last_date else f", published {summary.first_date}"
    outlets = ", ".join(summary.sources[:8]) + (" and others" if len(summary.sources) > 8 else "")
    text = (
        f"Hello! I answer questions about <b>{summary.articles} news articles</b>{escape(span)}"
        + (f" from {escape(outlets)}" if outlets else "")
        + ".\nI reply with the passages that answer you, quoted, each with a numbered citation. "
        "If the articles do not say, I tell you so.\n\nTry one of these, or type your own:"
    )
    buttons = [[InlineKeyboardButton(q[:60], callback_data=f"e:{i}")] for i, q in enumerate(state.examples)]
    await update.effective_message.reply_text(text, parse_mode=ParseMode.HTML, reply_markup=InlineKeyboardMarkup(buttons))


async def help_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if not await _allowed(update, context):
        return
    username = context.bot.username or "bot"
    text = (
        "<b>How to ask</b>\nType a question in plain words, e.g. <i>Who leads the Bahadurabad group?</i> "
        "Names, places and dates help. You can follow up (<i>and what about Kamal?</i>) or reply to one of my answers.\n"
        f"In groups, mention me (@{escape(username)} your question), reply to my message, or use /ask.\n\n"
        "<b>What the answer shows</b>\nThe sentence that best answers you, then the passages it comes from, quoted. "
        "[1], [2]... point to the Sources list: title (a link when known), outlet and date. "
        "<i>Full [n]</i> shows the whole passage, <i>Open [n]</i> the article, <i>More sources</i> the next passages.\n\n"
        "<b>Commands</b>\n/start what I know about\n/sources the articles\n/ask a question\n/help this message"
    )
    await update.effective_message.reply_text(text, parse_mode=ParseMode.HTML)


def _sources_markup(page: int, pages: int) -> InlineKeyboardMarkup | None:
    buttons = []
    if page > 0:
        buttons.append(InlineKeyboardButton("‹ Previous", callback_data=f"s:{page - 1}"))
    if page + 1 < pages:
        buttons.append(InlineKeyboardButton("Next ›", callback_data=f"s:{page + 1}"))
    return InlineKeyboardMarkup([buttons]) if buttons else None


async def sources_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if not await _allowed(update, context):
        return
    articles = await asyncio.to_thread(_state(context).answerer.articles)
    text, pages = render_sources_page(articles, 0, SOURCES_PER_PAGE)
    await update.effective_message.reply_text(
        text, parse_mode=ParseMode.HTML, reply_markup=_sources_markup(0, pages), link_preview_options=LinkPreviewOptions(is_disabled=True)
    )


async def reindex_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Admins: incremental rebuild in the background; answers keep coming from the old index."""
    state = _state(context)
    user = update.effective_user
    message = update.effective_message
    if not user or user.id not in state.settings.admin_user_ids:
        log.warning("refused /reindex from user %s", user.id if user else None)
        await message.reply_text("Only the bot's admins can rebuild the index.")
        return
    if state.rebuild_task and not state.rebuild_task.done():
        await message.reply_text("A rebuild is already running; I will report when it is done.")
        return
    await message.reply_text("Rebuilding the index in the background; I keep answering meanwhile.")

    async def rebuild():
        try:
            report = await asyncio.to_thread(state.answerer.rebuild)
            text = report.describe()
        except BotError as exc:
            log.warning("reindex failed: %s", exc)
            text = f"The rebuild failed and the previous index is still serving: {exc}"
        except Exception:
            log.exception("reindex crashed")
            text = "The rebuild failed and the previous index is still serving. The details are in the log."
        await context.bot.send_message(message.chat_id, escape(text)[:4000], parse_mode=ParseMode.HTML)

    state.rebuild_task = asyncio.create_task(rebuild())


# -- buttons ------------------------------------------------------------------------------


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    if not await _allowed(update, context):
        return
    state = _state(context)
    kind, _, rest = (query.data or "").partition(":")
    if kind == "s":
        await query.answer()
        articles = await asyncio.to_thread(state.answerer.articles)
        text, pages = render_sources_page(articles, int(rest or 0), SOURCES_PER_PAGE)
        page = min(max(int(rest or 0), 0), pages - 1)
        with contextlib.suppress(BadRequest):  # an unchanged page (list edited meanwhile) is fine
            await query.edit_message_text(
                text, parse_mode=ParseMode.HTML, reply_markup=_sources_markup(page, pages), link_preview_options=LinkPreviewOptions(is_disabled=True)
            )
        return
    if kind == "e":
        await query.answer()
        index = int(rest) if rest.isdigit() else 0
        question = state.examples[index % len(state.examples)]
        await query.message.reply_text(f"“{question}”")
        await answer_question(update, context, question)
        return
    key, _, rank = rest.partition(":")
    answer_state: AnswerState | None = state.answers.fetch(key)
    if answer_state is None:
        await query.answer(EXPIRED_REPLY, show_alert=True)
        return
    if kind == "f":
        passage = answer_state.passages.get(int(rank)) if rank.isdigit() else None
        if passage is None:
            await query.answer(EXPIRED_REPLY, show_alert=True)
            return
        await query.answer()
        for part in render_full_passage(passage, passage.chunk_start, passage.chunk_end):
            await query.message.reply_text(part, parse_mode=ParseMode.HTML, link_preview_options=LinkPreviewOptions(is_disabled=True))
        return
    if kind == "m":
        await query.answer()
        async with typing(context, query.message.chat_id):
            answer = await asyncio.to_thread(
                state.answerer.ask,
                answer_state.question,
                state.settings.top_k,
                offset=answer_state.shown,
                previous_question=answer_state.previous_question,
                force_context=answer_state.force_context,
            )
        if not answer.passages:
            await query.message.reply_text("There are no more passages about this.")
            return
        answer_state.shown += len(answer.passages)
        answer_state.passages.update({p.rank: p for p in answer.passages})
        more = len(answer.passages) == state.settings.top_k
        await _send_parts(query.message, render_more(answer), _keyboard(key, answer, more), quote=False)
        return
    await query.answer()


# -- errors, start-up, shutdown -----------------------------------------------------------


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log first, with the traceback; then a short apology, never the details."""
    log.error("error while handling an update", exc_info=context.error)
    if isinstance(update, Update):
        with contextlib.suppress(TelegramError):
            if update.callback_query:
                await update.callback_query.answer(ERROR_REPLY)
            elif update.effective_message:
                await update.effective_message.reply_text(ERROR_REPLY)


async def _watch_index(app: Application) -> None:
    """Notice an index rebuilt by `python -m bot index` and switch to it without a restart."""
    state: BotState = app.bot_data["state"]
    while True:
        await asyncio.sleep(state.settings.index_poll_seconds)
        try:
            if await asyncio.to_thread(state.answerer.reload_if_changed):
                log.info("switched to the rebuilt index %s", state.answerer.build_id)
        except BotError as exc:
            log.warning("rebuilt index not loaded, still serving the previous one: %s", exc)
        except Exception:
            log.exception("index watcher failed; still serving the previous index")


async def _post_init(app: Application) -> None:
    await app.bot.set_my_commands([BotCommand(name, description) for name, description in COMMANDS])
    state: BotState = app.bot_data["state"]
    if state.settings.index_poll_seconds > 0:
        state.watcher_task = asyncio.create_task(_watch_index(app))


async def _post_stop(app: Application) -> None:
    state: BotState = app.bot_data["state"]
    for task in (state.watcher_task, state.rebuild_task):
        if task and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def build_application(settings: Settings, answerer: QuestionAnswerer) -> Application:
    """All the wiring in one place: handlers, flood control, concurrency, state."""
    token = settings.require_token()
    builder = (
        ApplicationBuilder()
        .token(token)
        .rate_limiter(AIORateLimiter(max_retries=2))  # flood control toward Telegram
        .concurrent_updates(8)  # one slow question does not hold up other users
        .post_init(_post_init)
        .post_stop(_post_stop)
    )
    if settings.telegram_base_url:
        base = settings.telegram_base_url.rstrip("/")
        builder = builder.base_url(base).base_file_url(re.sub(r"/bot$", "/file/bot", base))
    app = builder.build()
    app.bot_data["state"] = BotState(settings, answerer, QuestionRateLimiter(settings.questions_per_minute))

    app.add_handler(CommandHandler("start", start))
    app.add_handler(CommandHandler("help", help_command))
    app.add_handler(CommandHandler("sources", sources_command))
    app.add_handler(CommandHandler("ask", ask_command))
    app.add_handler(CommandHandler("reindex", reindex_command))
    app.add_handler(CallbackQueryHandler(on_button))
    app.add_handler(MessageHandler(filters.UpdateType.EDITED, on_edited))
    app.add_handler(MessageHandler(filters.UpdateType.MESSAGE & filters.TEXT & ~filters.COMMAND, on_text))
    app.add_handler(MessageHandler(filters.UpdateType.MESSAGE & ~filters.TEXT & ~filters.StatusUpdate.ALL, on_unsupported))
    app.add_error_handler(on_error)
    return app


def run_bot(settings: Settings) -> None:
    """Load the model and index once, then serve by long polling (or webhook, if configured)."""
    token = settings.require_token()
    install_token_redaction(token)
    answerer = QuestionAnswerer(settings).load()
    app = build_application(settings, answerer)
    if settings.telegram_webhook_url:
        if not settings.telegram_webhook_secret:
            raise BotError("webhook mode needs TELEGRAM_WEBHOOK_SECRET so forged updates are refused")
        log.info("serving by webhook on %s:%s", settings.telegram_webhook_listen, settings.telegram_webhook_port)
        path = settings.telegram_webhook_url.rstrip("/").rsplit("/", 1)[-1] if "/" in settings.telegram_webhook_url[8:] else ""
        app.run_webhook(
            listen=settings.telegram_webhook_listen,
            port=settings.telegram_webhook_port,
            url_path=path,
            webhook_url=settings.telegram_webhook_url,
            secret_token=settings.telegram_webhook_secret,
            allowed_updates=Update.ALL_TYPES,
        )
    else:
        log.info("serving by long polling")
        app.run_polling(allowed_updates=Update.ALL_TYPES)
