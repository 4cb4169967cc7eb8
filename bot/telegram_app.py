"""The Telegram adapter: the only module that imports ``telegram``.

Flat async handlers that parse the update, call the core (in a thread: embedding and
search are blocking CPU work), and render with ``telegram_html``. All wiring is in
``build_application``. One error handler logs with the traceback and apologises to the
user; a stack trace never reaches a chat, and the token never reaches a log.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import dataclasses
import logging
import math
import re
import secrets
import signal
import sqlite3
import time
from collections import OrderedDict, deque
from urllib.parse import urlsplit
from dataclasses import dataclass, field

from telegram import (
    BotCommand,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    ReplyParameters,
    Update,
)
from telegram.constants import ChatAction, ChatType, ParseMode
import httpx
from telegram.error import BadRequest, InvalidToken, NetworkError, TelegramError, TimedOut
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
from telegram.request import HTTPXRequest

from bot.config import Settings
from bot.corpus import JSON_FILE_SIZE_FACTOR
from bot.dialogue import FOLLOW_UP, QUESTION, SMALL_TALK, Conversations, classify
from bot.errors import BotError, ConfigError
from bot.feedback import FeedbackStore
from bot.follows import FollowError, FollowStore, match_follows
from bot.ingest import Intake, IntakeReport
from bot.ingest.feeds import feed_urls
from bot.ingest.intake import UPLOAD_SUFFIXES
from bot.formatting import NOTHING_TO_CONTINUE, RESET_REPLY
from bot.service import QuestionAnswerer
from bot.telegram_html import (
    escape,
    plain_text,
    render_answer,
    render_full_passage,
    render_more,
    render_reply,
    render_follow_push,
    render_gaps,
    render_follows,
    render_intake,
    render_sources_page,
)
from bot.types import Answer, Passage
from bot.workqueue import QueueClosed, QueueFull, Ticket, WorkQueue

log = logging.getLogger(__name__)

SOURCES_PER_PAGE = 8
BUTTONS_PER_ROW = 4
COMMANDS = (
    ("start", "What I know about, with example questions"),
    ("help", "How to ask and what the citations mean"),
    ("sources", "The articles I answer from"),
    ("ask", "Ask a question (in groups: /ask your question)"),
    ("more", "More passages about the last answer"),
    ("reset", "Start over: forget the previous questions"),
    ("reindex", "Admins: update the index from the corpus"),
    ("follow", "Hear about new articles on a topic: /follow your topic"),
    ("following", "The topics this chat follows"),
    ("unfollow", "Stop following a topic"),
    ("update", "Admins: fetch new articles from the feeds now"),
    ("gaps", "Admins: questions the articles could not answer"),
)
NON_TEXT_REPLY = "I can only read text questions. Ask me something about the articles, for example: “{example}”"
EDITED_REPLY = "I answer new messages only: please send the corrected question again as a new message."
EMPTY_REPLY = "Please type a question in words, for example: “{example}”"
ERROR_REPLY = "Sorry, something went wrong while answering. Please try again in a moment."
REFUSED_REPLY = "Sorry, this bot is private. Ask its owner to add you if you need access."
EXPIRED_REPLY = "This answer has expired; please ask the question again."
RATE_LIMIT_REPLY = "You are asking faster than I can keep up: please wait {seconds} seconds."
UNKNOWN_COMMAND_REPLY = "I don't know the command {command}. Send /help to see what I can do, or just type your question."
BUSY_REPLY = "Busy: you're #{position} in line, about {seconds} s."
QUEUE_FULL_REPLY = "Sorry, too many questions at once right now. Please ask again in about {seconds} s."
SHUTDOWN_REPLY = "Sorry, I am restarting and could not answer this. Please ask again in a minute."
REDACTED = "[redacted-token]"
# Handlers PTB runs at once: every question in line holds one while it waits, so there must
# be room beyond the line for the updates that need no model (and for refusing the rest).
HANDLERS_BEYOND_QUEUE = 64
# A chat is told "Busy" at most once in this many seconds.
BUSY_NOTICE_EVERY_SECONDS = 60


# -- sending through faults ------------------------------------------------------------------

# A request that certainly never reached Telegram is sent again: SEND_ATTEMPTS in all, after
# SEND_BACKOFF_SECONDS and then twice as long each time (0.5 + 1 + 2 s). The fault campaign's
# bursts (a 500, then a dropped connection) were over within three tries; a longer outage
# gets the apology instead of an answer that arrives minutes late.
SEND_ATTEMPTS = 4
SEND_BACKOFF_SECONDS = 0.5
# Seconds to wait for Telegram's answer to a request. A request whose answer is late was
# received: giving up and sending it again is how an answer arrives twice. The campaign saw
# 20 s delays on sendMessage, which PTB's default (5 s) turned into lost answers and apologies.
READ_TIMEOUT_SECONDS = 30.0
# Failures that happen before Telegram has the whole request (so it cannot have acted on it):
# no connection, no free connection, the request not written, or the connection dropped with
# no answer at all (Telegram answers every request it handles, errors included).
_NEVER_ARRIVED = (
    httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.WriteError, httpx.WriteTimeout,
    httpx.RemoteProtocolError, httpx.ReadError,
)


def never_arrived(error: BaseException) -> bool:
    """Whether a failed request certainly did not reach Telegram, so sending it again cannot duplicate it.

    A read timeout is the one that may have arrived: Telegram may be doing it slowly.
    """
    return isinstance(error, TelegramError) and isinstance(error.__cause__, _NEVER_ARRIVED)


def maybe_delivered(error: BaseException) -> bool:
    """A timeout waiting for Telegram's answer: the request may well have been carried out."""
    return isinstance(error, TimedOut) and not never_arrived(error)


class RetryingRequest(HTTPXRequest):
    """PTB's HTTP layer, sending again what certainly failed: server errors (5xx, which say
    it was not done) and failures before the request arrived. Never what may have arrived."""

    async def do_request(self, url, method, request_data=None, *args, **kwargs):
        for attempt in range(1, SEND_ATTEMPTS + 1):
            last = attempt == SEND_ATTEMPTS
            try:
                code, payload = await super().do_request(url, method, request_data, *args, **kwargs)
            except TelegramError as exc:
                if last or not never_arrived(exc):
                    raise
                reason = type(exc.__cause__).__name__
            else:
                if code < 500 or last:
                    return code, payload
                reason = f"HTTP {code}"
            delay = SEND_BACKOFF_SECONDS * 2 ** (attempt - 1)
            # the URL holds the token: only the method name is logged
            log.info("%s failed (%s), not delivered; trying again in %.1f s", url.rsplit("/", 1)[-1], reason, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")


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
            return max(1, math.ceil(60 - (now - times[0])))
        times.append(now)
        self._times.put(user_id, times)
        return 0


@dataclass
class AnswerState:
    """What the buttons under one answer need, kept in memory under a short key."""

    question: str  # the question as answered (a follow-up resolved, Urdu read as English)
    chat_id: int  # the chat the answer was sent to: its buttons work there only
    shown: int
    passages: dict[int, Passage] = field(default_factory=dict)
    busy: bool = False  # a "More sources" search is running (a double tap must not repeat the page)


@dataclass
class BotState:
    settings: Settings
    answerer: QuestionAnswerer
    rate_limiter: QuestionRateLimiter
    # one conversation per private chat (per member in groups): follow-ups, "more", /reset
    conversations: Conversations = field(default_factory=Conversations)
    # (chat id, bot message id) -> the turn it answered (a reply to it is a follow-up)
    answered_messages: BoundedDict = field(default_factory=lambda: BoundedDict(20_000, max_age=24 * 3600))
    answers: BoundedDict = field(default_factory=lambda: BoundedDict(5_000, max_age=24 * 3600))
    refused: BoundedDict = field(default_factory=lambda: BoundedDict(10_000))
    # callback query ids already answered (Telegram refuses a second answer)
    answered_queries: BoundedDict = field(default_factory=lambda: BoundedDict(10_000, max_age=3600))
    # chats told "Busy" in the last minute: once per busy spell is enough (a notice costs one
    # of the ~30 messages a second Telegram allows, taken from the answers)
    told_busy: BoundedDict = field(default_factory=lambda: BoundedDict(10_000, max_age=BUSY_NOTICE_EVERY_SECONDS))
    rebuild_task: asyncio.Task | None = None
    watcher_task: asyncio.Task | None = None
    # the one line in front of the model (questions and "More sources" searches)
    queue: WorkQueue | None = None
    handle_signals: bool = False  # run_bot: SIGTERM/SIGINT start a graceful shutdown

    def __post_init__(self):
        if self.queue is None:
            self.queue = WorkQueue(self.settings.queue_size)


def _state(context: ContextTypes.DEFAULT_TYPE) -> BotState:
    return context.application.bot_data["state"]


# -- token hygiene --------------------------------------------------------------------------


class TokenRedactingFilter(logging.Filter):
    """Replaces the bot token in every log record (httpx logs request URLs, which contain it)."""

    def __init__(self, token: str):
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.token:
            return True
        message = record.getMessage()
        if self.token in message:
            record.msg, record.args = message.replace(self.token, REDACTED), None
        # The whole chain counts: a NetworkError's cause is often an httpx error quoting the URL.
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and self.token in record.exc_text:
            record.exc_text = record.exc_text.replace(self.token, REDACTED)
        if record.stack_info and self.token in record.stack_info:
            record.stack_info = record.stack_info.replace(self.token, REDACTED)
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
            await _ack(context, update.callback_query, REFUSED_REPLY, alert=True)
        elif update.effective_message and chat and chat.type == ChatType.PRIVATE:
            await update.effective_message.reply_text(REFUSED_REPLY)
    elif update.callback_query:
        await _ack(context, update.callback_query)
    return False


# -- rendering helpers ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def typing(context: ContextTypes.DEFAULT_TYPE, chat_id: int):
    """Show "typing…" at once and keep it alive (it lapses after ~5 s) while we work.

    The first action goes out alongside the work (no added latency), but the block does
    not end before it has been sent, so "typing" always precedes the reply.
    """
    first_sent = asyncio.Event()

    async def keep_alive():
        while True:
            with contextlib.suppress(TelegramError):
                await context.bot.send_chat_action(chat_id, ChatAction.TYPING)
            first_sent.set()
            await asyncio.sleep(4)

    task = asyncio.create_task(keep_alive())
    try:
        yield
    finally:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(first_sent.wait(), timeout=5)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _keyboard(key: str, answer: Answer, more: bool, vote: int | None = None) -> InlineKeyboardMarkup | None:
    """Per source "Full [n]" and "Open [n]", 👍 / 👎 when ``vote`` (the recorded answer's id) is
    given, then "More sources" (last). Callback data stays tiny.

    Rows hold at most ``BUTTONS_PER_ROW`` buttons (Telegram allows 8; phones show fewer well).
    """
    full = [InlineKeyboardButton(f"Full [{p.rank}]", callback_data=f"f:{key}:{p.rank}") for p in answer.passages]
    opened = [
        InlineKeyboardButton(f"Open [{p.rank}]", url=p.article.url)
        for p in answer.passages
        if p.article.url and p.article.url.startswith(("http://", "https://"))
    ]
    rows = [group[i : i + BUTTONS_PER_ROW] for group in (full, opened) for i in range(0, len(group), BUTTONS_PER_ROW)]
    if vote is not None:
        rows.append([InlineKeyboardButton("👍", callback_data=f"v:{vote}:u"), InlineKeyboardButton("👎", callback_data=f"v:{vote}:d")])
    if more:
        rows.append([InlineKeyboardButton("More sources", callback_data=f"m:{key}")])
    return InlineKeyboardMarkup(rows) if rows else None


async def _send_parts(
    context: ContextTypes.DEFAULT_TYPE, chat_id: int, parts: list[str], markup: InlineKeyboardMarkup | None, reply_to: int | None
) -> Message:
    """Send an answer split in parts (the first replying to ``reply_to``); buttons go under the last."""
    sent = None
    for i, part in enumerate(parts):
        sent = await context.bot.send_message(
            chat_id,
            part,
            parse_mode=ParseMode.HTML,
            reply_markup=markup if i == len(parts) - 1 else None,
            link_preview_options=LinkPreviewOptions(is_disabled=True),
            reply_parameters=ReplyParameters(reply_to, allow_sending_without_reply=True) if reply_to and i == 0 else None,
        )
    return sent


def _example(context: ContextTypes.DEFAULT_TYPE) -> str:
    return _state(context).settings.example_questions[0]


async def _ack(context: ContextTypes.DEFAULT_TYPE, query: CallbackQuery, text: str | None = None, alert: bool = False) -> bool:
    """Answer a callback query once (Telegram refuses a second answer); False if already answered."""
    answered = _state(context).answered_queries
    if answered.fetch(query.id) is not None:
        return False
    answered.put(query.id, True)
    await query.answer(text, show_alert=alert)
    return True


# -- questions ----------------------------------------------------------------------------


def _conversation_key(update: Update):
    """Private chats have one conversation; in a group each member has their own."""
    chat, user = update.effective_chat, update.effective_user
    return chat.id if chat.type == ChatType.PRIVATE or user is None else (chat.id, user.id)


async def answer_question(update: Update, context: ContextTypes.DEFAULT_TYPE, question: str, *, counted: bool = False) -> None:
    """Answer one message in the chat it came from: classified, typing, core in a thread, HTML reply.

    ``counted``: the caller already charged this to the user's questions-per-minute (a button).
    """
    state = _state(context)
    message = update.effective_message
    chat = update.effective_chat
    user = update.effective_user
    if not re.search(r"\w", question) and classify(question).kind != SMALL_TALK:
        await context.bot.send_message(chat.id, EMPTY_REPLY.format(example=_example(context)))
        return
    classified = classify(question)
    searches = classified.kind in (QUESTION, FOLLOW_UP) or classified.command == "more"  # small talk costs nothing
    if not counted and searches:
        wait = state.rate_limiter.wait_seconds(user.id if user else chat.id)
        if wait:
            await context.bot.send_message(chat.id, RATE_LIMIT_REPLY.format(seconds=wait))
            return

    conversation = state.conversations.of(_conversation_key(update))
    replied_turn = None
    replied = message.reply_to_message if isinstance(message, Message) else None
    if replied and replied.from_user and replied.from_user.id == context.bot.id:
        replied_turn = state.answered_messages.fetch((chat.id, replied.message_id))

    # In groups the answer quotes the question (several people may be asking); a button's
    # message may be inaccessible (older than 48 h), then there is nothing to quote.
    quote = message.message_id if chat.type != ChatType.PRIVATE and isinstance(message, Message) else None
    work = functools.partial(state.answerer.reply, conversation, question, top_k=state.settings.top_k, context=replied_turn)
    if not searches:  # small talk and commands need no model: they do not queue
        async with typing(context, chat.id):
            reply = await asyncio.to_thread(work)
        await _send_reply(update, context, reply, quote, conversation)
        return
    ticket = await _take_place(context, chat.id, quote, work)
    if ticket is None:
        return
    try:
        reply = await _wait_for_turn(context, chat.id, ticket, quote)
        if reply is not None:
            await _send_reply(update, context, reply, quote, conversation)
    finally:
        ticket.release()


async def _send_reply(update: Update, context: ContextTypes.DEFAULT_TYPE, reply, quote: int | None, conversation) -> None:
    if reply.kind == "command":
        await _run_command(update, context, reply)
        return
    if reply.answer is None:
        await _send_parts(context, update.effective_chat.id, render_reply(reply), None, quote)
        return
    await _send_answer(context, update.effective_chat.id, reply.answer, quote, conversation)


async def _take_place(context: ContextTypes.DEFAULT_TYPE, chat_id: int, quote: int | None, work) -> Ticket | None:
    """Put model work in the one line; say at once if it must wait, or why it was refused (None)."""
    state = _state(context)
    try:
        ticket = state.queue.submit(work)
    except QueueFull as full:
        log.warning("line full (%d): question refused", state.queue.capacity)
        await _notify(context, chat_id, QUEUE_FULL_REPLY.format(seconds=full.retry_after), quote)
        return None
    except QueueClosed:
        await _notify(context, chat_id, SHUTDOWN_REPLY, quote)
        return None
    if ticket.ahead and ticket.wait_seconds >= state.settings.busy_notice_seconds and state.told_busy.fetch(chat_id) is None:
        state.told_busy.put(chat_id, True)
        seconds = max(1, math.ceil(ticket.wait_seconds))
        with contextlib.suppress(TelegramError):  # the answer matters, the notice does not
            await _notify(context, chat_id, BUSY_REPLY.format(position=ticket.position, seconds=seconds), quote)
    return ticket


async def _wait_for_turn(context: ContextTypes.DEFAULT_TYPE, chat_id: int, ticket: Ticket, quote: int | None):
    """The work's result, with "typing…" once it is being done; None when the shutdown refused it."""
    try:
        if ticket.ahead == 0:
            async with typing(context, chat_id):
                return await ticket.result()
        return await ticket.result()
    except QueueClosed:
        await _notify(context, chat_id, SHUTDOWN_REPLY, quote)
        return None


async def _notify(context: ContextTypes.DEFAULT_TYPE, chat_id: int, text: str, quote: int | None) -> None:
    """A short plain-text notice (busy, refused), quoting the question in groups."""
    await context.bot.send_message(
        chat_id, text, reply_parameters=ReplyParameters(quote, allow_sending_without_reply=True) if quote else None
    )


async def _send_answer(context: ContextTypes.DEFAULT_TYPE, chat_id: int, answer: Answer, quote: int | None, conversation) -> None:
    """An answer with its buttons; remembered so that a reply to it continues its topic."""
    state = _state(context)
    vote = await _record_answer(context, chat_id, answer)
    if not answer.found:
        await _send_parts(context, chat_id, render_answer(answer), None, quote)
        return
    key = secrets.token_urlsafe(6)
    turn = conversation.context()
    state.answers.put(
        key, AnswerState(turn.question if turn else answer.question, chat_id, len(answer.passages), {p.rank: p for p in answer.passages})
    )
    sent = await _send_parts(context, chat_id, render_answer(answer), _keyboard(key, answer, more=True, vote=vote), quote)
    if turn is not None:
        state.answered_messages.put((chat_id, sent.message_id), turn)


async def _run_command(update: Update, context: ContextTypes.DEFAULT_TYPE, reply) -> None:
    """A command typed in words ("more", "start over", "sources"), as its slash twin does it."""
    chat_id = update.effective_chat.id
    if reply.command == "help":
        await help_command(update, context)
    elif reply.command == "sources":
        await sources_command(update, context)
    elif reply.command == "start":
        await start(update, context)
    elif reply.command == "reset":
        await context.bot.send_message(chat_id, RESET_REPLY)
    elif reply.command == "more":
        answer = reply.answer
        if answer is None:
            await context.bot.send_message(chat_id, NOTHING_TO_CONTINUE)
        elif not answer.passages:
            await context.bot.send_message(chat_id, "There are no more passages about this.")
        else:  # the same message, with the same buttons, as a press of "More sources"
            state = _state(context)
            turn = state.conversations.of(_conversation_key(update)).context()
            key = secrets.token_urlsafe(6)
            state.answers.put(key, AnswerState(turn.question, chat_id, turn.shown, {p.rank: p for p in answer.passages}))
            more = len(answer.passages) == state.settings.top_k
            await _send_parts(context, chat_id, render_more(answer), _keyboard(key, answer, more), None)


def _mentions_bot(message: Message, username: str) -> bool:
    """``@username`` as a whole word (``@newsbotfan`` is someone else)."""
    return bool(username) and re.search(rf"@{re.escape(username)}\b", message.text or "", re.IGNORECASE) is not None


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


async def reset_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/reset (or /new): forget this conversation's context."""
    if not await _allowed(update, context):
        return
    _state(context).conversations.of(_conversation_key(update)).reset()
    await update.effective_message.reply_text(RESET_REPLY)


async def more_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/more: the next passages about the last question answered in this conversation."""
    if not await _allowed(update, context):
        return
    await answer_question(update, context, "/more")


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


async def on_unknown_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A command the bot does not have: point to /help (private chats, or ``/cmd@thisbot`` in groups).

    ``/cmd@otherbot`` is for another bot and is ignored; so is a bare ``/cmd`` in a group,
    where it may be meant for any bot there.
    """
    message = update.effective_message
    chat = update.effective_chat
    word = (message.text or "").split(maxsplit=1)[0] if (message.text or "").strip() else ""
    name, at, addressee = word[1:].partition("@")
    username = context.bot.username or ""
    if at and addressee.lower() != username.lower():
        return  # addressed to another bot
    if chat.type != ChatType.PRIVATE and not at:
        return
    if not await _allowed(update, context):
        return
    command = "/" + (name[:32] + ("…" if len(name) > 32 else ""))
    await message.reply_text(UNKNOWN_COMMAND_REPLY.format(command=command))


async def on_edited(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """An edited message: we answer new messages only, so ask for it again (private chats)."""
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
    buttons = [[InlineKeyboardButton(q[:60], callback_data=f"e:{i}")] for i, q in enumerate(state.settings.example_questions)]
    await update.effective_message.reply_text(text, parse_mode=ParseMode.HTML, reply_markup=InlineKeyboardMarkup(buttons))


async def help_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """How to ask, what the citations mean, the commands."""
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
        "<b>Conversation</b>\nFollow-ups are read with your previous question, and I show how I read them. "
        "<i>more</i> (or /more) shows further passages; /reset (or /new) starts over. "
        "Questions in Roman Urdu and Urdu work too. When my articles are older than what you ask about, I say so.\n\n"
        "<b>Commands</b>\n/start what I know about\n/sources the articles\n/ask a question\n/more more passages\n"
        "/reset start over\n/follow a topic: new articles about it are sent here (/following, /unfollow)\n/help this message\n\n"
        f"<i>Questions are kept {_state(context).settings.question_retention_days} days with their answers and your 👍/👎, "
        "so the admins can see what the articles do not answer; then they are deleted.</i>"
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
    """The articles, a page at a time, with Previous/Next buttons."""
    if not await _allowed(update, context):
        return
    articles = await asyncio.to_thread(_state(context).answerer.articles)
    text, pages = render_sources_page(articles, 0, SOURCES_PER_PAGE)
    await update.effective_message.reply_text(
        text, parse_mode=ParseMode.HTML, reply_markup=_sources_markup(0, pages), link_preview_options=LinkPreviewOptions(is_disabled=True)
    )


async def reindex_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Admins: incremental rebuild in the background; answers keep coming from the old index."""
    if not await _allowed(update, context):  # the allow-list first: an unlisted user is refused once, then silence
        return
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
        intake = _intake_state(context)
        try:
            # Under the intake lock, like every update: followers hear about what it added, once.
            async with intake.lock:
                known = set(state.answerer.serving.index.articles)
                report = await asyncio.to_thread(state.answerer.rebuild)
                added = [a for a in state.answerer.serving.index.articles if a not in known]
                if added:
                    await _push_follows(context.application, added)
            text = report.describe()
        except BotError as exc:
            log.warning("reindex failed: %s", exc)
            text = f"The rebuild failed and the previous index is still serving: {exc}"
        except Exception:
            log.exception("reindex crashed")
            text = "The rebuild failed and the previous index is still serving. The details are in the log."
        await context.bot.send_message(message.chat_id, escape(text[:3500]), parse_mode=ParseMode.HTML)

    state.rebuild_task = asyncio.create_task(rebuild())


# -- buttons ------------------------------------------------------------------------------


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Button presses: sources pages, example questions, More sources, Full passage."""
    query = update.callback_query
    if not await _allowed(update, context):
        return
    state = _state(context)
    kind, _, rest = (query.data or "").partition(":")
    chat_id = query.message.chat.id if query.message else query.from_user.id
    if kind == "s":
        await _ack(context, query)
        articles = await asyncio.to_thread(state.answerer.articles)
        requested = int(rest) if rest.isdigit() else 0
        text, pages = render_sources_page(articles, requested, SOURCES_PER_PAGE)
        markup = _sources_markup(min(requested, pages - 1), pages)
        current = query.message if isinstance(query.message, Message) else None
        if current and current.text == plain_text(text) and current.reply_markup == markup:
            return  # a double tap: Telegram refuses an edit that changes nothing
        with contextlib.suppress(BadRequest):  # e.g. the message became too old to edit
            await query.edit_message_text(
                text, parse_mode=ParseMode.HTML, reply_markup=markup, link_preview_options=LinkPreviewOptions(is_disabled=True)
            )
        return
    if kind == "e":  # an example question: a search, so it counts toward the rate limit
        if await _over_rate_limit(context, query):
            return
        await _ack(context, query)
        index = int(rest) if rest.isdigit() else 0
        examples = state.settings.example_questions
        question = examples[index % len(examples)]
        await context.bot.send_message(chat_id, f"“{question}”")
        await answer_question(update, context, question, counted=True)
        return
    key, _, rank = rest.partition(":")
    answer_state: AnswerState | None = state.answers.fetch(key)
    if answer_state is not None and answer_state.chat_id != chat_id:
        # Button data is not a secret: another chat's key shows nothing of that chat's answer.
        log.warning("button data of chat %s pressed in chat %s; refused", answer_state.chat_id, chat_id)
        answer_state = None
    if answer_state is None or kind not in ("f", "m"):
        await _ack(context, query, EXPIRED_REPLY, alert=True)
        return
    if kind == "f":
        passage = answer_state.passages.get(int(rank)) if rank.isdigit() else None
        if passage is None:
            await _ack(context, query, EXPIRED_REPLY, alert=True)
            return
        await _ack(context, query)
        parts = render_full_passage(passage, passage.chunk_start, passage.chunk_end)
        await _send_parts(context, chat_id, parts, None, None)
        return
    # "More sources": a double tap (two presses arriving together) shows the next page once.
    # The check and the flag are set with no await in between, so concurrent presses see it.
    if answer_state.busy:
        await _ack(context, query)
        return
    if await _over_rate_limit(context, query):
        return
    answer_state.busy = True
    ticket = None
    try:
        await _ack(context, query)
        work = functools.partial(
            state.answerer.ask, answer_state.question, state.settings.top_k, offset=answer_state.shown, all_passages=True
        )
        ticket = await _take_place(context, chat_id, None, work)
        answer = ticket and await _wait_for_turn(context, chat_id, ticket, None)
        if answer is None:
            return
        if not answer.passages:
            await context.bot.send_message(chat_id, "There are no more passages about this.")
            return
        answer_state.shown += len(answer.passages)
        answer_state.passages.update({p.rank: p for p in answer.passages})
        more = len(answer.passages) == state.settings.top_k
        await _send_parts(context, chat_id, render_more(answer), _keyboard(key, answer, more), None)
    finally:
        answer_state.busy = False
        if ticket is not None:
            ticket.release()


async def _over_rate_limit(context: ContextTypes.DEFAULT_TYPE, query: CallbackQuery) -> bool:
    """A button that runs a search counts as a question; over the limit, say so in an alert."""
    wait = _state(context).rate_limiter.wait_seconds(query.from_user.id)
    if not wait:
        return False
    await _ack(context, query, RATE_LIMIT_REPLY.format(seconds=wait), alert=True)
    return True


# -- adding news and follows (issue 12) -------------------------------------------------------

ADD_REFUSED_REPLY = "Only the bot's admins can add articles. You can ask me about the ones I have, e.g. “{example}”"
UPDATE_REFUSED_REPLY = "Only the bot's admins can update the feeds."
INDEX_FAILED_REPLY = (
    "The articles are in the corpus, but the index could not be updated, so I still answer from the "
    "previous one; the next update or /reindex will try again."
)
# A message that is only links (one or more, spaces between): an admin adding articles.
LINKS_ONLY = re.compile(r"^\s*(?:https?://\S+\s*)+$", re.IGNORECASE)


@dataclass
class IntakeState:
    """What adding news needs in the running bot (``bot_data["intake"]``)."""

    intake: Intake  # long-lived: its per-host limit spans polls
    follows: FollowStore
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one update at a time (job, /update, links)


def _intake_state(context: ContextTypes.DEFAULT_TYPE) -> IntakeState:
    return context.application.bot_data["intake"]


def _is_admin(update: Update, context: ContextTypes.DEFAULT_TYPE) -> bool:
    user = update.effective_user
    return bool(user and user.id in _state(context).settings.admin_user_ids)


async def _intake_and_index(context: ContextTypes.DEFAULT_TYPE, work) -> tuple[IntakeReport, bool]:
    """Run one intake (in a thread), then the incremental build, swap the new index in, and push
    follows about the new articles. Returns the report and whether the index was updated."""
    state, intake = _state(context), _intake_state(context)
    async with intake.lock:
        report = await asyncio.to_thread(work, intake.intake)
        if not report.stored:
            return report, True
        started = time.perf_counter()
        try:
            await asyncio.to_thread(state.answerer.rebuild)
        except BotError as exc:
            log.warning("index update after intake failed: %s", exc)
            return report, False
        report.record_index(state.answerer.serving.index.chunks, time.perf_counter() - started)
        await _push_follows(context.application, report.new_article_ids)
    return report, True


async def _push_follows(app: Application, article_ids: list[str]) -> None:
    """One message per new article that answers a chat's follow (capped per chat); flood
    control is the application's rate limiter's."""
    state, intake = app.bot_data["state"], app.bot_data["intake"]
    follows = await asyncio.to_thread(intake.follows.all)
    pushes = await asyncio.to_thread(match_follows, state.answerer, follows, article_ids, state.settings.follow_pushes_per_chat)
    for push in pushes:
        chat_id = push.follow.chat_id
        key = secrets.token_urlsafe(6)
        state.answers.put(key, AnswerState(push.follow.topic, chat_id, 1, {1: push.passage}))
        single = dataclasses.replace(push.answer, passages=(push.passage,))
        try:
            await _send_parts(app, chat_id, render_follow_push(push), _keyboard(key, single, more=False), None)
        except TelegramError as exc:  # e.g. the chat blocked the bot: the others still get theirs
            log.warning("follow push to chat %s failed: %s", chat_id, exc)


async def _reply_intake(message: Message, report: IntakeReport, indexed: bool) -> None:
    parts = render_intake(report)
    if not indexed:
        parts.append(escape(INDEX_FAILED_REPLY))
    for part in parts:
        await message.reply_text(part, parse_mode=ParseMode.HTML, link_preview_options=LinkPreviewOptions(is_disabled=True))


async def update_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Admins: poll the feeds now, add what is new, update the index, push follows."""
    if not await _allowed(update, context):
        return
    message = update.effective_message
    if not _is_admin(update, context):
        log.warning("refused /update from user %s", update.effective_user.id if update.effective_user else None)
        await message.reply_text(UPDATE_REFUSED_REPLY)
        return
    feeds = feed_urls(_state(context).settings)
    if not feeds:
        await message.reply_text("No feeds are configured: list them in FEED_URLS or the feeds file (see .env.example).")
        return
    async with typing(context, message.chat_id):
        report, indexed = await _intake_and_index(context, lambda intake: intake.update_feeds())
    await _reply_intake(message, report, indexed)


async def _admin_message(update: Update, context: ContextTypes.DEFAULT_TYPE) -> Message | None:
    """The message, when an allowed admin sent it; anyone else is refused politely (None)."""
    if not await _allowed(update, context):
        return None
    message = update.effective_message
    if not _is_admin(update, context):
        await message.reply_text(ADD_REFUSED_REPLY.format(example=_example(context)))
        return None
    return message


async def on_link(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A private message that is only links: an admin adds them; anyone else is told politely."""
    message = await _admin_message(update, context)
    if message is None:
        return
    links = (message.text or "").split()
    async with typing(context, message.chat_id):
        report, indexed = await _intake_and_index(context, lambda intake: intake.add(links))
    await _reply_intake(message, report, indexed)


async def on_document(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A file sent in private: an admin's .txt/.md/.html/.json is added like `python -m bot add FILE`."""
    message = await _admin_message(update, context)
    if message is None:
        return
    document = message.document
    name = document.file_name or "upload"
    suffix = ("." + name.rsplit(".", 1)[-1].lower()) if "." in name else ""
    limit = _state(context).settings.max_article_bytes * (JSON_FILE_SIZE_FACTOR if suffix in (".json", ".jsonl") else 1)
    if suffix not in UPLOAD_SUFFIXES:
        await message.reply_text(f"I can add .txt, .md, .html and .json files, not {suffix or 'files without an extension'}.")
        return
    if document.file_size and document.file_size > limit:
        await message.reply_text(f"{name} is too large: {document.file_size:,} bytes (the limit is {limit:,}).")
        return
    async with typing(context, message.chat_id):
        file = await document.get_file()
        data = bytes(await file.download_as_bytearray())
        report, indexed = await _intake_and_index(context, lambda intake: intake.add_document(name, data))
    await _reply_intake(message, report, indexed)


async def poll_feeds_job(context: ContextTypes.DEFAULT_TYPE) -> None:
    """The JobQueue's feed poll (every FEED_POLL_MINUTES): new items added, index swapped, follows pushed."""
    try:
        report, indexed = await _intake_and_index(context, lambda intake: intake.update_feeds())
    except Exception:
        log.exception("scheduled feed update failed; the index serving is unchanged")
        return
    log.info("feeds polled: %s", report.describe().replace("\n", "; "))
    if not indexed:
        log.warning("feed items stored but the index was not updated; the next poll retries")


async def follow_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/follow <topic or question>: new articles that answer it are sent to this chat."""
    if not await _allowed(update, context):
        return
    message = update.effective_message
    topic = " ".join(context.args or [])
    try:
        follow, new = await asyncio.to_thread(_intake_state(context).follows.add, message.chat_id, topic)
    except FollowError as exc:
        await message.reply_text(str(exc))
        return
    cap = _state(context).settings.follow_pushes_per_chat
    text = (
        f"Following “{escape(follow.topic)}”. When new articles answer it, I send them here (at most {cap} after each update)."
        if new else f"This chat already follows “{escape(follow.topic)}”."
    )
    await message.reply_text(text + " /following lists your follows.", parse_mode=ParseMode.HTML)


async def following_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/following: this chat's follows, numbered for /unfollow."""
    if not await _allowed(update, context):
        return
    follows = await asyncio.to_thread(_intake_state(context).follows.of_chat, update.effective_chat.id)
    await update.effective_message.reply_text(render_follows([f.topic for f in follows]), parse_mode=ParseMode.HTML)


async def unfollow_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/unfollow <number or topic>: stop one follow."""
    if not await _allowed(update, context):
        return
    message = update.effective_message
    which = " ".join(context.args or [])
    if not which:
        follows = await asyncio.to_thread(_intake_state(context).follows.of_chat, message.chat_id)
        await message.reply_text(render_follows([f.topic for f in follows]), parse_mode=ParseMode.HTML)
        return
    try:
        removed = await asyncio.to_thread(_intake_state(context).follows.remove, message.chat_id, which)
    except FollowError as exc:
        await message.reply_text(str(exc))
        return
    await message.reply_text(f"Stopped following “{escape(removed.topic)}”.", parse_mode=ParseMode.HTML)


def _schedule_feed_polls(app: Application, settings: Settings) -> None:
    """Poll the feeds every FEED_POLL_MINUTES (off when 0 or when no feed is listed at start)."""
    if settings.feed_poll_minutes <= 0 or not feed_urls(settings):
        return
    if app.job_queue is None:
        log.warning("feeds are listed but python-telegram-bot's job queue is not installed; use /update")
        return
    interval = settings.feed_poll_minutes * 60
    app.job_queue.run_repeating(poll_feeds_job, interval=interval, first=min(interval, 60), name="feeds")


# -- feedback: 👍/👎 and /gaps -----------------------------------------------------------------

VOTE_THANKS = "Thanks! Your vote helps decide which articles to add."


def _feedback(context: ContextTypes.DEFAULT_TYPE) -> FeedbackStore:
    return context.application.bot_data["feedback"]


async def _record_answer(context: ContextTypes.DEFAULT_TYPE, chat_id: int, answer: Answer) -> int | None:
    """Keep the answer for votes and /gaps; a failure here never stops the answer."""
    try:
        return await asyncio.to_thread(_feedback(context).record, chat_id, answer, _state(context).answerer.build_id)
    except (sqlite3.Error, OSError) as exc:
        log.warning("answer not recorded for feedback: %s", exc)
        return None


async def on_vote(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """👍 / 👎 under an answer: stored with the answer (one vote per user, the last one counts)."""
    query = update.callback_query
    if not await _allowed(update, context):
        return
    parts = (query.data or "").split(":")
    answer_id, direction = (parts[1], parts[2]) if len(parts) == 3 else ("", "")
    chat_id = query.message.chat.id if query.message else query.from_user.id
    stored = answer_id.isdigit() and await asyncio.to_thread(
        _feedback(context).vote, int(answer_id), chat_id, query.from_user.id, direction == "u"
    )
    await _ack(context, query, VOTE_THANKS if stored else EXPIRED_REPLY, alert=not stored)


async def gaps_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Admins: the most frequent recent questions answered "not found" or voted down."""
    if not await _allowed(update, context):
        return
    message = update.effective_message
    if not _is_admin(update, context):
        await message.reply_text("Only the bot's admins can see the questions readers asked.")
        return
    gaps = await asyncio.to_thread(_feedback(context).gaps)
    days = _state(context).settings.question_retention_days
    await message.reply_text(render_gaps([(g.question, g.asked, g.not_found, g.down_votes) for g in gaps], days), parse_mode=ParseMode.HTML)


# -- errors, start-up, shutdown -----------------------------------------------------------


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log first, with the traceback; then a short apology, never the details.

    No apology when the failure was Telegram not answering in time: the reply may well have
    been delivered, and an apology under an answer is worse than the rare lost reply.
    """
    if maybe_delivered(context.error):
        log.warning("Telegram did not answer within %.0f s; the reply may have been delivered, so it is "
                    "neither sent again nor apologised for", READ_TIMEOUT_SECONDS)
        return
    log.error("error while handling an update", exc_info=context.error)
    if not isinstance(update, Update):
        return
    with contextlib.suppress(TelegramError):
        # A button press already acknowledged can only get the apology as a message.
        if update.callback_query and await _ack(context, update.callback_query, ERROR_REPLY, alert=True):
            return
        if update.effective_chat:
            await context.bot.send_message(update.effective_chat.id, ERROR_REPLY)


async def _watch_index(app: Application) -> None:
    """Notice an index rebuilt by `python -m bot index` (or `add`, `update`) and switch to it
    without a restart; follows hear about the articles it added."""
    state: BotState = app.bot_data["state"]
    intake: IntakeState = app.bot_data["intake"]
    while True:
        await asyncio.sleep(state.settings.index_poll_seconds)
        try:
            # Under the intake lock: an update of the bot's own pushes its new articles itself.
            async with intake.lock:
                known = set(state.answerer.serving.index.articles)
                if await asyncio.to_thread(state.answerer.reload_if_changed):
                    log.info("switched to the rebuilt index %s", state.answerer.build_id)
                    added = [a for a in state.answerer.serving.index.articles if a not in known]
                    if added:
                        await _push_follows(app, added)
        except BotError as exc:
            log.warning("rebuilt index not loaded, still serving the previous one: %s", exc)
        except Exception:
            log.exception("index watcher failed; still serving the previous index")


def stop_taking_questions(app: Application) -> bool:
    """Close the line: new questions are refused, those in line are answered for the grace period.

    False if it was closed already: then what is still in line is refused at once.
    """
    state: BotState = app.bot_data["state"]
    if state.queue.closed:
        log.warning("second stop signal: refusing the %d questions still in line", len(state.queue))
        state.queue.refuse_waiting()
        return False
    log.info("stop signal: no new questions; answering the %d in line (grace %.1f s)", len(state.queue), state.settings.shutdown_grace_seconds)
    state.queue.close(state.settings.shutdown_grace_seconds)
    return True


def begin_shutdown(app: Application) -> None:
    """SIGTERM/SIGINT: take no new questions, answer those in line for the grace period, then stop.

    PTB then stops polling (updates already fetched are still handled: refused politely),
    waits for every handler (the line empties, or is refused when the grace period ends),
    and ``run_polling`` returns. A second signal refuses what is still in line at once.
    """
    if stop_taking_questions(app):
        app.stop_running()


async def _post_init(app: Application) -> None:
    await app.bot.set_my_commands([BotCommand(name, description) for name, description in COMMANDS])
    state: BotState = app.bot_data["state"]
    if state.handle_signals:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, begin_shutdown, app)
    if state.settings.index_poll_seconds > 0:
        state.watcher_task = asyncio.create_task(_watch_index(app))


async def _post_stop(app: Application) -> None:
    state: BotState = app.bot_data["state"]
    for task in (state.watcher_task, state.rebuild_task):
        if task and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if not state.queue.closed:  # stopped without a signal (tests, errors): nothing may wait forever
        state.queue.close(0)
    await state.queue.drained()
    state.queue.shutdown()
    log.info("stopped: %d answered through the line, %d refused (full), %d refused (shutting down)",
             state.queue.completed, state.queue.refused_full, state.queue.refused_closed)


def build_application(settings: Settings, answerer: QuestionAnswerer) -> Application:
    """All the wiring in one place: handlers, flood control, concurrency, state."""
    token = settings.require_token()
    builder = (
        ApplicationBuilder()
        .token(token)
        .rate_limiter(AIORateLimiter(max_retries=2))  # flood control toward Telegram
        # 256 connections: PTB's default for the bot's requests
        .request(RetryingRequest(connection_pool_size=256, read_timeout=READ_TIMEOUT_SECONDS))
        # Every question waiting in the line holds a handler; beyond it, room for the rest.
        .concurrent_updates(settings.queue_size + HANDLERS_BEYOND_QUEUE)
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
    app.add_handler(CommandHandler(["reset", "new"], reset_command))
    app.add_handler(CommandHandler("more", more_command))
    app.add_handler(CommandHandler("reindex", reindex_command))
    app.add_handler(CommandHandler("update", update_command))
    app.add_handler(CommandHandler("follow", follow_command))
    app.add_handler(CommandHandler("following", following_command))
    app.add_handler(CommandHandler("unfollow", unfollow_command))
    app.add_handler(CommandHandler("gaps", gaps_command))
    app.add_handler(CallbackQueryHandler(on_vote, pattern=r"^v:"))
    app.add_handler(CallbackQueryHandler(on_button))
    app.add_handler(MessageHandler(filters.UpdateType.EDITED, on_edited))
    private = filters.UpdateType.MESSAGE & filters.ChatType.PRIVATE
    app.add_handler(MessageHandler(private & filters.Regex(LINKS_ONLY), on_link))
    app.add_handler(MessageHandler(private & filters.Document.ALL, on_document))
    app.add_handler(MessageHandler(filters.UpdateType.MESSAGE & filters.TEXT & ~filters.COMMAND, on_text))
    app.add_handler(MessageHandler(filters.UpdateType.MESSAGE & filters.COMMAND, on_unknown_command))
    app.add_handler(MessageHandler(filters.UpdateType.MESSAGE & ~filters.TEXT & ~filters.StatusUpdate.ALL, on_unsupported))
    app.add_error_handler(on_error)
    app.bot_data["intake"] = IntakeState(Intake(settings), FollowStore(settings.data_dir))
    app.bot_data["feedback"] = FeedbackStore(settings.data_dir, settings.question_retention_days)
    _schedule_feed_polls(app, settings)
    return app


@contextlib.asynccontextmanager
async def serving(app: Application):
    """Serve ``app`` by long polling inside the running event loop (as ``run_polling`` does,
    hooks included), and stop it cleanly on leaving: for benchmarks driving the real bot."""
    await app.initialize()
    if app.post_init:
        await app.post_init(app)
    await app.updater.start_polling(poll_interval=0, timeout=1, allowed_updates=Update.ALL_TYPES)
    await app.start()
    try:
        yield app
    finally:
        await app.updater.stop()
        await app.stop()
        if app.post_stop:
            await app.post_stop(app)
        await app.shutdown()


def build_echo_application(token: str, base_url: str, *, flood_control: bool = False) -> Application:
    """The floor for ``eval load``: python-telegram-bot's minimal echo bot (its examples/echobot.py).

    ``flood_control``: with the rate limiter the news bot uses (Telegram's ~30 messages a
    second per bot), which is what bounds any bot answering a crowd.
    """

    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await update.message.reply_text(update.message.text)

    builder = ApplicationBuilder().token(token).base_url(base_url)
    if flood_control:
        builder = builder.rate_limiter(AIORateLimiter(max_retries=2))
    app = builder.build()
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, echo))
    return app


_SECRET_SHAPE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


def webhook_options(settings: Settings) -> dict:
    """Arguments for PTB's webhook server: Telegram must send the secret with every update.

    The listener serves the path of TELEGRAM_WEBHOOK_URL (a reverse proxy terminates HTTPS
    in front of it), and PTB answers 403 to any request without the secret header.
    """
    secret = settings.telegram_webhook_secret
    if not secret or not _SECRET_SHAPE.match(secret):
        raise ConfigError(
            "webhook mode needs TELEGRAM_WEBHOOK_SECRET (1-256 characters of A-Z, a-z, 0-9, _ and -) "
            "so that forged updates are refused; set it in the environment or .env"
        )
    url = settings.telegram_webhook_url
    if not url.startswith("https://"):
        raise ConfigError("TELEGRAM_WEBHOOK_URL must be the public https:// address Telegram posts updates to")
    return {
        "listen": settings.telegram_webhook_listen,
        "port": settings.telegram_webhook_port,
        "url_path": urlsplit(url).path.strip("/"),
        "webhook_url": url,
        "secret_token": secret,
        "allowed_updates": Update.ALL_TYPES,
    }


DEFAULT_BASE_URL = "https://api.telegram.org/bot"


def redact(text: str, token: str) -> str:
    """``text`` with the token (and its secret half alone) replaced by ``[redacted-token]``."""
    token = token.strip()
    if not token:
        return text
    text = text.replace(token, REDACTED)
    secret = token.partition(":")[2]
    return text.replace(secret, REDACTED) if len(secret) >= 8 else text


def startup_error(exc: TelegramError, settings: Settings) -> ConfigError | None:
    """The one line for a start-up failure the user can fix (never quoting the token), or None.

    PTB's own messages quote the token ("The token `…` was rejected by the server."), so
    nothing of the exception's text is reused except a network reason, and that redacted.
    """
    base = (settings.telegram_base_url or DEFAULT_BASE_URL).rstrip("/")
    if isinstance(exc, InvalidToken):
        where = " (and TELEGRAM_BASE_URL, which must end in /bot)" if settings.telegram_base_url else ""
        return ConfigError(f"Telegram rejected the bot token; check TELEGRAM_BOT_TOKEN in .env or the environment{where}")
    if isinstance(exc, NetworkError):  # TimedOut included
        reason = " ".join(redact(str(exc), settings.telegram_bot_token).split()) or type(exc).__name__
        return ConfigError(
            f"cannot reach the Telegram Bot API at {redact(base, settings.telegram_bot_token)}: {reason}; "
            "check the network or TELEGRAM_BASE_URL"
        )
    return None


async def check_bot_api(settings: Settings) -> None:
    """Ask the Bot API who we are before loading anything: a bad token or no network is one line."""
    from telegram import Bot

    kwargs = {"base_url": settings.telegram_base_url.rstrip("/")} if settings.telegram_base_url else {}
    bot = Bot(settings.require_token(), **kwargs)
    try:
        async with bot:  # initialize() calls getMe
            pass
    except TelegramError as exc:
        error = startup_error(exc, settings)
        if error is None:
            raise
        raise error from None


def run_bot(settings: Settings) -> None:
    """Load the model and index once, then serve by long polling (or webhook, if configured)."""
    token = settings.require_token()
    install_token_redaction(token)
    options = webhook_options(settings) if settings.telegram_webhook_url else None
    asyncio.run(check_bot_api(settings))
    answerer = QuestionAnswerer(settings).load()
    app = build_application(settings, answerer)
    app.bot_data["state"].handle_signals = True  # begin_shutdown instead of PTB's abrupt stop
    try:
        if options:
            log.info("serving by webhook on %s:%s", options["listen"], options["port"])
            app.run_webhook(**options, stop_signals=None)
        else:
            log.info("serving by long polling")
            app.run_polling(allowed_updates=Update.ALL_TYPES, stop_signals=None)
    except TelegramError as exc:  # e.g. the network went away between the check and the start
        error = startup_error(exc, settings)
        if error is None:
            raise
        raise error from None
