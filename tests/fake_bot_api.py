"""A fake Telegram Bot API server on 127.0.0.1, for end-to-end tests of the bot.

Why this exists: the tests may never reach api.telegram.org (or any address other than
loopback), yet we want the *real* python-telegram-bot ``Application`` to run unmodified,
talking HTTP to something that answers like Telegram. So this module serves the Bot API
methods the bot uses, with Telegram's response shapes and -- the point of it -- Telegram's
validation rules (HTML entity parsing, the 4096 UTF-16 code unit limit, 64-byte
callback_data, "message is not modified", ...), answering rule violations with the same
HTTP 400 and ``description`` Telegram gives. A test can then assert ``server.errors() == []``
to prove the bot never sent anything Telegram would have refused.

The server runs in a background thread with its own event loop, so it works under sync
tests and under async tests whose loop also runs the bot. Every test-facing method is
thread-safe.

Typical use::

    with FakeBotApi() as server:
        app = Application.builder().token(server.token).base_url(server.base_url).build()
        ...  # start the app polling
        ann = server.user(1001, "Ann")
        server.send_text(server.private_chat(ann), ann, "/start")
        [reply] = await server.async_wait_for_messages(ann["id"], 1)
        assert "Welcome" in reply.text and server.errors() == []

Known simplifications are listed in the docstring of :class:`FakeBotApi`.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import pytest
from aiohttp import web

__all__ = [
    "Call",
    "FakeBotApi",
    "HtmlParseError",
    "SentMessage",
    "fake_bot_api",
    "parse_telegram_html",
    "utf16_len",
]

DEFAULT_TOKEN = "123456:TEST-token-abcdefghijklmnopqrstuvwxyz"
MAX_MESSAGE_LENGTH = 4096  # UTF-16 code units, after entity parsing
MAX_CALLBACK_DATA_BYTES = 64
MAX_CALLBACK_ANSWER_LENGTH = 200
MAX_LONG_POLL_SECONDS = 30.0
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024  # bots may download files up to 20 MB

# Parameters Telegram documents as JSON-serialized objects/arrays. When they arrive as
# strings (always the case for form-encoded bodies, which is what PTB sends) they are
# decoded; any other string parameter is left alone, so a message text like "[1] foo" stays
# a string.
_JSON_PARAMS = frozenset(
    {
        "reply_markup",
        "entities",
        "caption_entities",
        "commands",
        "scope",
        "reply_parameters",
        "link_preview_options",
        "allowed_updates",
        "media",
        "results",
        "menu_button",
        "rights",
    }
)

_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)

# The fields that make an inline keyboard button do something; Telegram needs exactly one.
_BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)

_COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}")


# --------------------------------------------------------------------------------------
# Telegram's HTML parser
# --------------------------------------------------------------------------------------


class HtmlParseError(ValueError):
    """The text is not valid Telegram HTML; ``str(err)`` is tdlib's message.

    The Bot API reports it as ``Bad Request: can't parse entities: <message>``.
    """


def _suffix(file_name: str) -> str:
    """Telegram keeps a document's extension in its file_path (documents/file_7.pdf)."""
    match = re.search(r"\.[A-Za-z0-9]{1,8}$", file_name)
    return match.group(0).lower() if match else ""


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units: the unit Telegram uses for lengths and entity offsets.

    Characters outside the BMP (most emoji) count 2, which ``len()`` would count 1.
    """
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


# tdlib's is_space(): note that it includes NUL, which doubles as "end of text" below.
_SPACE = frozenset(b" \t\r\n\x00\x0b")
_ALLOWED_TAGS = frozenset(
    {
        "a",
        "b",
        "strong",
        "i",
        "em",
        "s",
        "strike",
        "del",
        "u",
        "ins",
        "tg-spoiler",
        "tg-emoji",
        "span",
        "pre",
        "code",
        "blockquote",
    }
)
_NAMED_ENTITIES = {b"lt": 0x3C, b"gt": 0x3E, b"amp": 0x26, b"quot": 0x22}
_SIMPLE_ENTITY_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",  # only class="tg-spoiler" gets this far
}


def _is_ascii_alpha(c: int) -> bool:
    return 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A


def _is_ascii_digit(c: int) -> bool:
    return 0x30 <= c <= 0x39


def _decode_html_entity(data: bytes, pos: int) -> tuple[int, int]:
    """Decode the character reference at ``data[pos] == '&'`` the way tdlib does.

    Returns ``(code point, position after it)`` or ``(0, pos)`` when it is not one of the
    references Telegram supports (&lt; &gt; &amp; &quot; and numeric ones). As in tdlib the
    trailing ';' is optional.
    """
    n = len(data)

    def at(k: int) -> int:
        return data[k] if k < n else 0

    end = pos + 1
    code = 0
    if at(pos + 1) == 0x23:  # '#'
        end += 1
        if at(pos + 2) == 0x78:  # 'x' (lower case only, as in tdlib)
            end += 1
            while chr(at(end)) in "0123456789abcdefABCDEF":
                code = min(code * 16 + int(chr(at(end)), 16), 0x110000)
                end += 1
        else:
            while _is_ascii_digit(at(end)):
                code = min(code * 10 + at(end) - 0x30, 0x110000)
                end += 1
        if code == 0 or code >= 0x10FFFF or end - pos >= 10:
            return 0, pos
    else:
        while _is_ascii_alpha(at(end)):
            end += 1
        code = _NAMED_ENTITIES.get(data[pos + 1 : end], 0)
        if not code:
            return 0, pos
    if at(end) == 0x3B:  # ';'
        end += 1
    return code, end


def _checked_link(url: str) -> str | None:
    """A simplified tdlib ``get_checked_link``: the normalized URL, or None if invalid.

    Accepts http(s) URLs whose host looks like a domain or IP, bare domains (Telegram adds
    ``http://``), and tg:// / ton:// links.
    """
    url = url.strip()
    if not url or any(ch.isspace() for ch in url):
        return None
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest, url = "http", url, "http://" + url
    scheme = scheme.lower()
    if scheme in ("tg", "ton"):
        return url if rest else None
    if scheme not in ("http", "https"):
        return None
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return None
    host = parts.hostname or ""
    if "." not in host or not re.fullmatch(r"[\w.\-~]+", host) or host.startswith("."):
        return None
    return url


def _make_link_entity(url: str, offset: int, length: int) -> dict | None:
    match = re.fullmatch(r"tg://user\?id=(\d+)", url)
    if match:
        user = {"id": int(match.group(1)), "is_bot": False, "first_name": ""}
        return {"type": "text_mention", "offset": offset, "length": length, "user": user}
    checked = _checked_link(url)
    if checked is None:
        return None  # tdlib silently drops links it cannot use
    return {"type": "text_link", "offset": offset, "length": length, "url": checked}


def parse_telegram_html(html: str, *, strict_ampersand: bool = True) -> tuple[str, list[dict]]:
    """Parse ``html`` exactly as Telegram does for ``parse_mode="HTML"``.

    A port of tdlib's ``parse_html`` (td/telegram/MessageEntity.cpp), which is what the Bot
    API server runs: same supported tags, same character references, same error messages
    and byte offsets (offsets count UTF-8 bytes of the input). Returns the plain text and
    Bot API ``MessageEntity`` dicts (offsets/lengths in UTF-16 code units), or raises
    :class:`HtmlParseError`.

    ``strict_ampersand``: tdlib itself lets a bare ``&`` that starts no known reference
    through literally (``AT&T`` works), but the Bot API documentation requires every ``&``
    outside a reference to be escaped, and text such as ``&lt`` in an article *would* be
    silently decoded. Strict mode (the default) therefore rejects a bare ``&`` so escaping
    bugs surface in tests; pass False for tdlib's exact behaviour.
    """
    data = html.encode("utf-8", "surrogatepass")
    n = len(data)

    def at(k: int) -> int:
        return data[k] if k < n else 0

    def bare_ampersand(pos: int) -> HtmlParseError:
        return HtmlParseError(f'Character "&" must be escaped as "&amp;" at byte offset {pos}')

    out = bytearray()
    utf16_offset = 0
    need_recheck_utf8 = False
    # (tag name, argument, utf16 offset where it starts, len(out) where it starts)
    nested: list[tuple[str, str, int, int]] = []
    entities: list[dict] = []
    i = 0
    while i < n:
        c = data[i]
        if c == 0x26:  # '&'
            code, end = _decode_html_entity(data, i)
            if code:
                utf16_offset += 2 if code > 0xFFFF else 1
                if 0xD800 <= code <= 0xDFFF:
                    need_recheck_utf8 = True
                out += chr(code).encode("utf-8", "surrogatepass")
                i = end
                continue
            if strict_ampersand:
                raise bare_ampersand(i)
        if c != 0x3C:  # not '<'
            if c & 0xC0 != 0x80:  # first byte of a UTF-8 sequence
                utf16_offset += 2 if c >= 0xF0 else 1
            out.append(c)
            i += 1
            continue

        begin = i
        i += 1
        if at(i) != 0x2F:  # start tag
            while at(i) not in _SPACE and at(i) != 0x3E:
                i += 1
            if at(i) == 0:
                raise HtmlParseError(f"Unclosed start tag at byte offset {begin}")
            tag = data[begin + 1 : i].lower().decode("utf-8", "replace")
            if tag not in _ALLOWED_TAGS:
                raise HtmlParseError(f'Unsupported start tag "{tag}" at byte offset {begin}')
            argument = ""
            while at(i) != 0x3E:
                while at(i) != 0 and at(i) in _SPACE:
                    i += 1
                if at(i) == 0x3E:
                    break
                attr_begin = i
                while at(i) not in _SPACE and at(i) not in (0x3D, 0x3E):
                    i += 1
                attr_name = data[attr_begin:i]
                if not attr_name:
                    raise HtmlParseError(f'Empty attribute name in the tag "{tag}" at byte offset {begin}')
                while at(i) != 0 and at(i) in _SPACE:
                    i += 1
                if at(i) != 0x3D:  # '='
                    if tag == "blockquote" and attr_name == b"expandable":
                        argument = "1"
                        continue
                    raise HtmlParseError(
                        f'Expected equal sign in declaration of an attribute of the tag "{tag}" at byte offset {begin}'
                    )
                i += 1
                while at(i) != 0 and at(i) in _SPACE:
                    i += 1
                if at(i) == 0:
                    raise HtmlParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
                if at(i) not in (0x22, 0x27):  # unquoted name token
                    token_begin = i
                    while _is_ascii_alpha(at(i)) or _is_ascii_digit(at(i)) or at(i) in (0x2E, 0x2D):
                        i += 1
                    value = data[token_begin:i].lower()
                    if at(i) not in _SPACE and at(i) != 0x3E:
                        raise HtmlParseError(f"Unexpected end of name token at byte offset {token_begin}")
                else:  # quoted string literal; references are decoded inside it
                    quote = at(i)
                    i += 1
                    buf = bytearray()
                    while at(i) != quote and at(i) != 0:
                        if at(i) == 0x26:
                            code, end = _decode_html_entity(data, i)
                            if code:
                                buf += chr(code).encode("utf-8", "surrogatepass")
                                i = end
                                continue
                            if strict_ampersand:
                                raise bare_ampersand(i)
                        buf.append(at(i))
                        i += 1
                    if at(i) == quote:
                        i += 1
                    value = bytes(buf)
                if at(i) == 0:
                    raise HtmlParseError(f"Unclosed start tag at byte offset {begin}")
                text_value = value.decode("utf-8", "replace")
                if tag == "a" and attr_name == b"href":
                    argument = text_value
                elif tag == "code" and attr_name == b"class" and text_value.startswith("language-"):
                    argument = text_value[len("language-") :]
                elif tag == "span" and attr_name == b"class" and text_value.startswith("tg-"):
                    argument = text_value[len("tg-") :]
                elif tag == "tg-emoji" and attr_name == b"emoji-id":
                    argument = text_value
            if tag == "span" and argument != "spoiler":
                raise HtmlParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {begin}')
            nested.append((tag, argument, utf16_offset, len(out)))
            i += 1  # skip '>'
            continue

        # end tag
        if not nested:
            raise HtmlParseError(f"Unexpected end tag at byte offset {begin}")
        while at(i) not in _SPACE and at(i) != 0x3E:
            i += 1
        end_name = data[begin + 2 : i].lower().decode("utf-8", "replace")
        while at(i) in _SPACE and at(i) != 0:
            i += 1
        if at(i) != 0x3E:
            raise HtmlParseError(f"Unclosed end tag at byte offset {begin}")
        tag, argument, start, out_start = nested[-1]
        if end_name and end_name != tag:
            raise HtmlParseError(
                f'Unmatched end tag at byte offset {begin}, expected "</{tag}>", found "</{end_name}>"'
            )
        if utf16_offset > start:
            length = utf16_offset - start
            last = entities[-1] if entities else None
            same_span = last is not None and last["offset"] == start and last["length"] == length
            if tag in _SIMPLE_ENTITY_TYPES:
                entities.append({"type": _SIMPLE_ENTITY_TYPES[tag], "offset": start, "length": length})
            elif tag == "tg-emoji":
                if not argument.isdigit() or int(argument) == 0:
                    raise HtmlParseError("Invalid custom emoji identifier specified")
                entities.append(
                    {"type": "custom_emoji", "offset": start, "length": length, "custom_emoji_id": argument}
                )
            elif tag == "a":
                url = argument or out[out_start:].decode("utf-8", "replace")
                entity = _make_link_entity(url, start, length)
                if entity:
                    entities.append(entity)
            elif tag == "pre":
                if same_span and last["type"] == "code" and last.get("language"):
                    last["type"] = "pre"
                else:
                    entities.append({"type": "pre", "offset": start, "length": length})
            elif tag == "code":
                if same_span and last["type"] == "pre" and argument:
                    last["language"] = argument
                else:
                    entity = {"type": "code", "offset": start, "length": length}
                    if argument:
                        entity["language"] = argument  # dropped below unless a <pre> claims it
                    entities.append(entity)
            elif tag == "blockquote":
                kind = "expandable_blockquote" if argument else "blockquote"
                entities.append({"type": kind, "offset": start, "length": length})
        nested.pop()
        i += 1  # skip '>'

    if nested:
        raise HtmlParseError(f'Can\'t find end tag corresponding to start tag "{nested[-1][0]}"')
    for entity in entities:
        if entity["type"] == "code":
            entity.pop("language", None)
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    try:
        text = out.decode("utf-8")
    except UnicodeDecodeError:
        if need_recheck_utf8:
            raise HtmlParseError(
                "Text contains invalid Unicode characters after decoding HTML entities, "
                "check for unmatched surrogate code units"
            ) from None
        raise HtmlParseError("Strings must be encoded in UTF-8") from None
    return text, entities


def _strip_text(text: str, entities: list[dict]) -> tuple[str, list[dict]]:
    """Trim surrounding whitespace as Telegram does, keeping entities aligned with the text."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    shift = utf16_len(text[: len(text) - len(text.lstrip())])
    new_len = utf16_len(stripped)
    kept = []
    for entity in entities:
        start = max(entity["offset"] - shift, 0)
        end = min(entity["offset"] + entity["length"] - shift, new_len)
        if end > start:
            kept.append({**entity, "offset": start, "length": end - start})
    return stripped, kept


def _auto_entities(text: str) -> list[dict]:
    """The bot_command and mention entities Telegram's clients attach to user messages.

    PTB's CommandHandler and mention filters look at these, not at the raw text. Patterns
    follow tdlib's match_bot_commands / match_mentions.
    """
    entities = []
    for match in re.finditer(r"(?<![\w/<>])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w/<>])", text):
        entities.append(("bot_command", match.start(), match.end()))
    for match in re.finditer(r"(?<!\w)@[A-Za-z0-9_]{2,32}(?!\w)", text):
        if not any(s <= match.start() < e for _, s, e in entities):
            entities.append(("mention", match.start(), match.end()))
    entities.sort(key=lambda t: t[1])
    return [
        {"type": kind, "offset": utf16_len(text[:start]), "length": utf16_len(text[start:end])}
        for kind, start, end in entities
    ]


# --------------------------------------------------------------------------------------
# Records handed to tests
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request the server answered (or lost because the client went away).

    Unpacks as ``method, params, status`` so ``for method, params, status in calls()``
    works; ``response`` is the JSON body sent back. ``status`` is None when the client
    disconnected first (PTB cancels its pending getUpdates when it stops polling).
    ``injected`` marks failures a test asked for with :meth:`FakeBotApi.fail_next`.
    """

    method: str
    params: dict
    status: int | None
    response: dict | None
    at: float
    injected: bool = False

    def __iter__(self) -> Iterator[Any]:
        return iter((self.method, self.params, self.status))

    @property
    def description(self) -> str:
        return (self.response or {}).get("description", "")

    def __str__(self) -> str:
        params = json.dumps(self.params, ensure_ascii=False, default=str)
        if len(params) > 300:
            params = params[:300] + "..."
        outcome = self.description or ("ok" if self.status == 200 else "no response")
        return f"{self.status} {self.method} {params} -> {outcome}"


@dataclass(frozen=True)
class SentMessage:
    """A message the bot sent, as it currently stands (after any edits).

    ``text`` is what a user would see (entities parsed away); ``html`` is the raw ``text``
    parameter exactly as the bot sent it, so a test can check either. ``message`` is the
    Telegram ``Message`` object the server returned for the latest send/edit.
    """

    chat_id: int
    message_id: int
    text: str
    html: str
    parse_mode: str | None
    entities: list[dict]
    reply_markup: dict | None
    reply_to_message_id: int | None
    edit_count: int
    message: dict
    history: list[dict] = field(default_factory=list)  # earlier versions of ``message``

    @property
    def buttons(self) -> list[dict]:
        """The inline keyboard buttons, row by row, flattened."""
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [button for row in rows for button in row]

    @property
    def callback_data(self) -> list[str]:
        return [b["callback_data"] for b in self.buttons if "callback_data" in b]


class _ApiError(Exception):
    """An error answer: HTTP status plus Telegram's description."""

    def __init__(self, status: int, description: str, parameters: dict | None = None):
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def body(self) -> dict:
        body: dict[str, Any] = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


class _ClientGone(Exception):
    """The client hung up before we answered; nothing to send."""


def _bad_request(message: str) -> _ApiError:
    return _ApiError(400, f"Bad Request: {message}")


@dataclass
class _StoredMessage:
    message: dict
    by_bot: bool
    html: str = ""
    parse_mode: str | None = None
    reply_markup: dict | None = None  # whatever markup the bot sent (any keyboard type)
    history: list[dict] = field(default_factory=list)
    deleted: bool = False
    seq: int = field(default_factory=itertools.count().__next__)  # creation order


@dataclass
class _Poller:
    superseded: bool = False


# --------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------


class FakeBotApi:
    """A Telegram Bot API server on 127.0.0.1 for tests (see the module docstring).

    Start it with ``with FakeBotApi() as server:`` (or ``start()`` / ``stop()``), point PTB at
    ``server.base_url``, then drive it with :meth:`send_text`, :meth:`press_button` & co.
    and inspect :meth:`sent_messages`, :meth:`calls` and :meth:`errors`.

    Deliberate simplifications (everything else aims to match Telegram):

    * Only parse_mode HTML is validated; Markdown/MarkdownV2 text is stored unparsed.
    * Telegram's own entity detection in bot messages (URLs, hashtags) is not done; the
      returned ``entities`` are exactly those from the HTML (or the ``entities`` parameter).
    * No automatic flood control; use :meth:`flood_next` to simulate it.
    * A getUpdates that arrives while another is waiting makes the older one fail with 409
      Conflict, as on Telegram -- unless the older client disconnected within 0.25 s (PTB
      cancels its poll on stop and immediately polls once more), which is not an error.
    * ``strict_ampersand`` (default True) rejects a bare ``&`` in HTML; see
      :func:`parse_telegram_html`.
    """

    _METHODS = (
        "getMe",
        "getUpdates",
        "deleteWebhook",
        "setWebhook",
        "getWebhookInfo",
        "sendMessage",
        "editMessageText",
        "editMessageReplyMarkup",
        "deleteMessage",
        "sendChatAction",
        "answerCallbackQuery",
        "setMyCommands",
        "getMyCommands",
        "deleteMyCommands",
        "close",
        "logOut",
        "getFile",
    )

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        bot_id: int | None = None,
        bot_username: str = "newsbot",
        bot_first_name: str = "News Bot",
        strict_ampersand: bool = True,
        group_privacy: bool = False,
        max_poll_timeout: float = MAX_LONG_POLL_SECONDS,
    ) -> None:
        """Configure (but do not start) the server.

        ``bot_id`` defaults to the numeric prefix of ``token``, as on Telegram.
        ``group_privacy``: when True, :meth:`send_text` in groups only delivers what a bot in
        privacy mode would get (commands, replies to the bot, mentions of the bot).
        ``max_poll_timeout`` caps how long a getUpdates long poll is held.
        """
        self._token = token
        prefix = token.split(":", 1)[0]
        self._bot_user = {
            "id": bot_id if bot_id is not None else (int(prefix) if prefix.isdigit() else 1),
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": not group_privacy,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        self._strict_ampersand = strict_ampersand
        self._group_privacy = group_privacy
        self._max_poll_timeout = max_poll_timeout
        self._method_names = {m.lower(): m for m in self._METHODS}

        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._users: dict[int, dict] = {}
        self._chats: dict[int, dict] = {}
        self._messages: dict[tuple[int, int], _StoredMessage] = {}
        self._next_message_id: dict[int, int] = {}
        self._updates: list[dict] = []  # queued, not yet confirmed
        self._next_update_id = 1
        self._callback_queries: dict[str, dict] = {}
        self._callback_answers: list[dict] = []
        self._query_ids = itertools.count(4_000_000_000_000_000_001)
        self._file_ids = itertools.count(1)
        self._calls: list[Call] = []
        self._listeners: list[Callable[[Call], None]] = []
        self._injected: dict[str, list[_ApiError]] = {}
        self._webhook: dict | None = None
        self._commands: dict[tuple[str, str], list[dict]] = {}
        self._files: dict[str, tuple[str, bytes]] = {}  # file_id -> (file_path, content)

        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._closing = False
        self._update_event: asyncio.Event | None = None
        self._pollers: list[_Poller] = []

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        """Bind an OS-chosen port on 127.0.0.1 and serve from a background thread."""
        if self._thread is not None:
            raise RuntimeError("FakeBotApi already started")
        ready = threading.Event()
        failure: list[BaseException] = []
        self._closing = False
        self._thread = threading.Thread(target=self._serve, args=(ready, failure), name="FakeBotApi", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("FakeBotApi did not start within 10 s")
        if failure:
            self._thread.join()
            self._thread = None
            raise RuntimeError("FakeBotApi failed to start") from failure[0]
        return self

    def stop(self) -> None:
        """Release waiting long polls, close every connection and join the thread."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()

    def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            try:
                loop.run_until_complete(self._startup())
            except BaseException as exc:  # noqa: BLE001 - handed to start()'s caller
                failure.append(exc)
                return
            finally:
                ready.set()
            loop.run_forever()
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                self._loop = None
                loop.close()

    async def _startup(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_route("GET", "/file/bot{token}/{path:.+}", self._download)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        # handler_cancellation: a client that hangs up (PTB cancelling a long poll) cancels
        # its handler, so the poll stops waiting and is not mistaken for a live one.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        self._port = runner.addresses[0][1]
        self._update_event = asyncio.Event()

    async def _shutdown(self) -> None:
        self._closing = True
        self._wake_pollers_in_loop()
        await asyncio.sleep(0)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---------------------------------------------------------------- identity

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeBotApi not started")
        return self._port

    @property
    def base_url(self) -> str:
        """For ``Bot(base_url=...)``: PTB appends the token itself."""
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    @property
    def token(self) -> str:
        return self._token

    @property
    def bot_user(self) -> dict:
        """The bot's ``User`` object, as getMe returns it."""
        return dict(self._bot_user)

    # ---------------------------------------------------------------- HTTP plumbing

    async def _download(self, request: web.Request) -> web.Response:
        """A file's bytes at ``/file/bot<token>/<file_path>``, as getFile's path promises."""
        path = request.match_info["path"]
        with self._lock:
            found = next((content for file_path, content in self._files.values() if file_path == path), None)
        if request.match_info["token"] != self._token or found is None:
            return await self._not_found(request)
        self._record(Call("downloadFile", {"file_path": path}, 200, None, time.time()))
        return web.Response(body=found, content_type="application/octet-stream")

    async def _not_found(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)

    async def _read_params(self, request: web.Request) -> dict:
        """Merge query string and body (JSON, urlencoded or multipart) into one dict."""
        params: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            raw = await request.read()
            if raw.strip():
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise _bad_request("can't parse JSON encoded request") from None
                if not isinstance(body, dict):
                    raise _bad_request("JSON encoded request must be an object")
                params.update(body)
        elif request.body_exists:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    params[key] = {"filename": value.filename, "content_type": value.content_type}
                else:
                    params[key] = value
        for key in _JSON_PARAMS & params.keys():
            value = params[key]
            if isinstance(value, str):
                try:
                    params[key] = json.loads(value)
                except ValueError:
                    pass  # left as a string; the method reports it as unparsable
        return params

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params: dict = {}
        injected = False
        try:
            try:
                params = await self._read_params(request)
                if request.match_info["token"] != self._token:
                    if ":" not in request.match_info["token"]:
                        raise _ApiError(404, "Not Found")
                    raise _ApiError(401, "Unauthorized")
                method = self._method_names.get(method.lower(), method)
                with self._lock:
                    queue = self._injected.get(method)
                    failure = queue.pop(0) if queue else None
                if failure is not None:
                    injected = True
                    raise failure
                if method == "getUpdates":
                    result = await self._get_updates(params, request)
                elif method in self._method_names.values():
                    with self._lock:
                        result = getattr(self, f"_api_{method}")(params)
                else:
                    raise _ApiError(404, "Not Found: method not found")
                status, body = 200, {"ok": True, "result": result}
            except _ApiError as err:
                status, body = err.status, err.body()
            except Exception as exc:  # noqa: BLE001 - a bug in this fake: make it loud, not a hang
                status = 500
                body = {
                    "ok": False,
                    "error_code": 500,
                    "description": f"Internal Server Error: FakeBotApi bug: {exc!r}",
                }
        except asyncio.CancelledError:  # the client hung up (handler_cancellation)
            self._record(Call(method, params, None, None, time.time()))
            raise
        except _ClientGone:
            self._record(Call(method, params, None, None, time.time()))
            return web.Response(status=204)  # nobody is listening any more
        self._record(Call(method, params, status, body, time.time(), injected))
        return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))

    def _record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)
            self._changed.notify_all()
            listeners = list(self._listeners)
        for listener in listeners:
            listener(call)

    def add_listener(self, listener: Callable[[Call], None]) -> None:
        """Call ``listener(call)`` (in the server's thread) for every request answered from now on.

        For load drivers: cheaper than polling :meth:`sent_messages`, which copies every message.
        Keep it quick; it runs on the server's event loop.
        """
        with self._lock:
            self._listeners.append(listener)

    # ---------------------------------------------------------------- parameter helpers

    @staticmethod
    def _int(params: Mapping, name: str, default: int | None = None) -> int | None:
        value = params.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            raise _bad_request(f'field "{name}" must be a valid Number')
        if isinstance(value, int):
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise _bad_request(f'field "{name}" must be a valid Number') from None
        return int(number)

    @staticmethod
    def _bool(params: Mapping, name: str) -> bool:
        value = params.get(name)
        if isinstance(value, str):
            return value.strip().lower() in ("true", "1")
        return bool(value)

    @staticmethod
    def _str(params: Mapping, name: str) -> str | None:
        value = params.get(name)
        if value is None:
            return None
        return value if isinstance(value, str) else json.dumps(value)

    def _chat(self, params: Mapping) -> dict:
        value = params.get("chat_id")
        if value is None or value == "":
            raise _bad_request("chat_id is empty")
        if isinstance(value, str) and value.startswith("@"):
            for chat in self._chats.values():
                if chat.get("username", "").lower() == value[1:].lower():
                    return chat
            raise _bad_request("chat not found")
        try:
            chat_id = int(value)
        except (TypeError, ValueError):
            raise _bad_request("chat not found") from None
        chat = self._chats.get(chat_id)
        if chat is None:
            raise _bad_request("chat not found")
        return chat

    def _text_and_entities(self, params: Mapping, name: str = "text") -> tuple[str, list[dict], str, str | None]:
        """Apply parse_mode and Telegram's length rules; returns (text, entities, raw, mode)."""
        raw = self._str(params, name)
        if raw is None:
            raise _bad_request("message text is empty")
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError:
            raise _bad_request("strings must be encoded in UTF-8") from None
        parse_mode = self._str(params, "parse_mode") or None
        explicit = params.get("entities")
        if explicit is not None:
            if not isinstance(explicit, list) or not all(isinstance(e, dict) for e in explicit):
                raise _bad_request("can't parse entities JSON object")
            text, entities = raw, [dict(e) for e in explicit]
        elif parse_mode is None:
            text, entities = raw, []
        elif parse_mode.lower() == "html":
            try:
                text, entities = parse_telegram_html(raw, strict_ampersand=self._strict_ampersand)
            except HtmlParseError as err:
                raise _bad_request(f"can't parse entities: {err}") from None
        elif parse_mode.lower() in ("markdown", "markdownv2"):
            text, entities = raw, []  # not validated by this fake
        else:
            raise _bad_request("unsupported parse_mode")
        text, entities = _strip_text(text, entities)
        if not text:
            raise _bad_request("message text is empty")
        if utf16_len(text) > MAX_MESSAGE_LENGTH:
            raise _bad_request("message is too long")
        return text, entities, raw, parse_mode

    @staticmethod
    def _reply_markup(params: Mapping) -> tuple[dict | None, dict | None]:
        """Validate reply_markup; returns (markup as sent, inline keyboard to echo or None)."""
        markup = params.get("reply_markup")
        if markup is None or markup == "":
            return None, None
        if not isinstance(markup, dict):
            raise _bad_request("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" not in markup:
            if not ({"keyboard", "remove_keyboard", "force_reply"} & markup.keys()):
                raise _bad_request("can't parse reply keyboard markup JSON object")
            return markup, None
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise _bad_request('can\'t parse inline keyboard: Field "inline_keyboard" must be of type Array')
        for row in rows:
            for button in row:
                if not isinstance(button, dict):
                    raise _bad_request("can't parse inline keyboard button: InlineKeyboardButton must be an Object")
                if not isinstance(button.get("text"), str):
                    raise _bad_request('can\'t parse inline keyboard button: Field "text" must be of type String')
                if not button["text"]:
                    raise _bad_request("BUTTON_TEXT_INVALID")
                actions = [key for key in _BUTTON_ACTIONS if key in button]
                if not actions:
                    raise _bad_request(
                        "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
                    )
                if len(actions) > 1:
                    raise _bad_request(
                        "can't parse inline keyboard button: exactly one of "
                        f"{', '.join(_BUTTON_ACTIONS)} must be given, got {', '.join(actions)}"
                    )
                if "callback_data" in button:
                    data = button["callback_data"]
                    if not isinstance(data, str):
                        raise _bad_request(
                            'can\'t parse inline keyboard button: Field "callback_data" must be of type String'
                        )
                    if not 1 <= len(data.encode("utf-8")) <= MAX_CALLBACK_DATA_BYTES:
                        raise _bad_request("BUTTON_DATA_INVALID")
                if "url" in button:
                    url = button["url"]
                    if not isinstance(url, str) or _checked_link(url) is None:
                        raise _bad_request(f"inline keyboard button URL '{url}' is invalid: Wrong HTTP URL")
        return markup, markup

    # ---------------------------------------------------------------- update queue

    def _select_updates(self, offset: int, limit: int) -> list[dict]:
        """Confirm updates below ``offset`` (Telegram forgets them) and return the next batch."""
        if offset < 0:
            del self._updates[: max(len(self._updates) + offset, 0)]
        elif offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        return copy.deepcopy(self._updates[:limit])

    async def _get_updates(self, params: Mapping, request: web.Request) -> list[dict]:
        offset = self._int(params, "offset", 0) or 0
        limit = min(max(self._int(params, "limit", 100) or 100, 1), 100)
        try:
            timeout = float(params.get("timeout") or 0)
        except (TypeError, ValueError):
            raise _bad_request('field "timeout" must be a valid Number') from None
        timeout = min(max(timeout, 0.0), self._max_poll_timeout)
        with self._lock:
            if self._webhook is not None:
                raise _ApiError(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; "
                    "use deleteWebhook to delete the webhook first",
                )
            batch = self._select_updates(offset, limit)
        if batch or timeout <= 0 or self._closing:
            return batch
        for other in self._pollers:
            other.superseded = True
        self._wake_pollers_in_loop()
        poller = _Poller()
        self._pollers.append(poller)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                event = self._update_event
                assert event is not None
                if poller.superseded:
                    await asyncio.sleep(0.25)  # a cancelled client's handler is cancelled here
                    transport = request.transport
                    if transport is None or transport.is_closing():
                        raise _ClientGone()
                    raise _ApiError(
                        409,
                        "Conflict: terminated by other getUpdates request; "
                        "make sure that only one bot instance is running",
                    )
                with self._lock:
                    batch = self._select_updates(offset, limit)
                remaining = deadline - loop.time()
                if batch or self._closing or remaining <= 0:
                    return batch
                try:
                    await asyncio.wait_for(event.wait(), remaining)
                except TimeoutError:
                    pass
        finally:
            self._pollers.remove(poller)

    def _wake_pollers_in_loop(self) -> None:
        """Set the current update event and arm a fresh one (call in the server loop)."""
        event = self._update_event
        if event is not None:
            self._update_event = asyncio.Event()
            event.set()

    def _wake_pollers(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._wake_pollers_in_loop)
            except RuntimeError:  # loop closed between the check and the call
                pass

    def _enqueue(self, update: dict) -> dict:
        with self._lock:
            if "update_id" not in update:
                update["update_id"] = self._next_update_id
            self._next_update_id = max(self._next_update_id, update["update_id"]) + 1
            self._updates.append(copy.deepcopy(update))
            self._changed.notify_all()
        self._wake_pollers()
        return copy.deepcopy(update)

    # ---------------------------------------------------------------- message store

    def _new_message_id(self, chat_id: int) -> int:
        message_id = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = message_id + 1
        return message_id

    def _store_message(self, message: dict, by_bot: bool) -> _StoredMessage:
        chat = message["chat"]
        self._chats.setdefault(chat["id"], dict(chat))
        key = (chat["id"], message["message_id"])
        self._next_message_id[chat["id"]] = max(self._next_message_id.get(chat["id"], 1), message["message_id"] + 1)
        stored = self._messages.get(key)
        if stored is None:
            stored = _StoredMessage(copy.deepcopy(message), by_bot)
            self._messages[key] = stored
        else:
            stored.history.append(stored.message)
            stored.message = copy.deepcopy(message)
        return stored

    def _replied(self, chat_id: int, message_id: int) -> dict | None:
        """The replied-to message as Telegram embeds it: without its own reply_to_message."""
        stored = self._messages.get((chat_id, message_id))
        if stored is None or stored.deleted:
            return None
        message = copy.deepcopy(stored.message)
        message.pop("reply_to_message", None)
        return message

    def _find_message(self, params: Mapping, *, not_found: str) -> tuple[dict, _StoredMessage]:
        if params.get("inline_message_id"):
            raise _bad_request("MESSAGE_ID_INVALID")  # inline mode is not simulated
        chat = self._chat(params)
        message_id = self._int(params, "message_id")
        if message_id is None:
            raise _bad_request("message identifier is not specified")
        stored = self._messages.get((chat["id"], message_id))
        if stored is None or stored.deleted:
            raise _bad_request(not_found)
        return chat, stored

    def _snapshot(self, stored: _StoredMessage) -> SentMessage:
        message = copy.deepcopy(stored.message)
        reply = message.get("reply_to_message")
        return SentMessage(
            chat_id=message["chat"]["id"],
            message_id=message["message_id"],
            text=message.get("text", ""),
            html=stored.html,
            parse_mode=stored.parse_mode,
            entities=copy.deepcopy(message.get("entities", [])),
            reply_markup=copy.deepcopy(stored.reply_markup),
            reply_to_message_id=reply["message_id"] if reply else None,
            edit_count=len(stored.history),
            message=message,
            history=copy.deepcopy(stored.history),
        )

    # ---------------------------------------------------------------- Bot API methods
    # Each runs under self._lock in the server thread and returns the "result" value.

    def _api_getMe(self, params: Mapping) -> dict:
        return dict(self._bot_user)

    def _api_deleteWebhook(self, params: Mapping) -> bool:
        self._webhook = None
        if self._bool(params, "drop_pending_updates"):
            self._updates.clear()
        return True

    def _api_setWebhook(self, params: Mapping) -> bool:
        url = self._str(params, "url") or ""
        if not url:
            self._webhook = None
            return True
        if not url.lower().startswith("https://") or _checked_link(url) is None:
            raise _bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        self._webhook = {"url": url, "params": dict(params)}
        if self._bool(params, "drop_pending_updates"):
            self._updates.clear()
        return True

    def _api_getWebhookInfo(self, params: Mapping) -> dict:
        return {
            "url": (self._webhook or {}).get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }

    def _api_sendMessage(self, params: Mapping) -> dict:
        chat = self._chat(params)
        raw_markup, inline_markup = self._reply_markup(params)
        text, entities, raw, parse_mode = self._text_and_entities(params)
        reply_params = params.get("reply_parameters")
        if isinstance(reply_params, str):
            raise _bad_request("can't parse reply parameters JSON object")
        reply_params = dict(reply_params or {})
        if params.get("reply_to_message_id") not in (None, ""):
            reply_params.setdefault("message_id", self._int(params, "reply_to_message_id"))
            if self._bool(params, "allow_sending_without_reply"):
                reply_params.setdefault("allow_sending_without_reply", True)
        reply = None
        if reply_params.get("message_id") is not None:
            reply_chat = chat
            if reply_params.get("chat_id") not in (None, ""):
                reply_chat = self._chat({"chat_id": reply_params["chat_id"]})
            reply = self._replied(reply_chat["id"], self._int(reply_params, "message_id"))
            if reply is None and not self._bool(reply_params, "allow_sending_without_reply"):
                raise _bad_request("message to be replied not found")
        message: dict[str, Any] = {
            "message_id": self._new_message_id(chat["id"]),
            "from": dict(self._bot_user),
            "chat": dict(chat),
            "date": int(time.time()),
            "text": text,
        }
        if entities:
            message["entities"] = entities
        if reply is not None:
            message["reply_to_message"] = reply
        if inline_markup is not None:
            message["reply_markup"] = inline_markup
        stored = self._store_message(message, by_bot=True)
        stored.html, stored.parse_mode, stored.reply_markup = raw, parse_mode, raw_markup
        return copy.deepcopy(message)

    def _edit(self, stored: _StoredMessage, changes: dict, new_markup: dict | None) -> dict:
        """Apply an edit, refusing a no-op exactly as Telegram does.

        ``changes`` maps message fields to new values (None removes the field). Omitting
        reply_markup in an edit removes the inline keyboard, as on Telegram, so the "same
        content" test compares against ``new_markup`` even when it is None.
        """
        current = stored.message
        message = copy.deepcopy(current)
        for key, value in changes.items():
            if value is None:
                message.pop(key, None)
            else:
                message[key] = value
        if new_markup is None:
            message.pop("reply_markup", None)
        else:
            message["reply_markup"] = new_markup

        def content(m: dict) -> tuple:
            return m.get("text"), m.get("entities") or [], m.get("reply_markup")

        if content(message) == content(current):
            raise _bad_request(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        message["edit_date"] = int(time.time())
        self._store_message(message, by_bot=stored.by_bot)
        return copy.deepcopy(message)

    def _api_editMessageText(self, params: Mapping) -> dict:
        raw_markup, inline_markup = self._reply_markup(params)
        text, entities, raw, parse_mode = self._text_and_entities(params)
        _, stored = self._find_message(params, not_found="message to edit not found")
        if not stored.by_bot or "text" not in stored.message:
            raise _bad_request("message can't be edited")
        result = self._edit(stored, {"text": text, "entities": entities or None}, inline_markup)
        stored.html, stored.parse_mode, stored.reply_markup = raw, parse_mode, raw_markup
        return result

    def _api_editMessageReplyMarkup(self, params: Mapping) -> dict:
        raw_markup, inline_markup = self._reply_markup(params)
        _, stored = self._find_message(params, not_found="message to edit not found")
        if not stored.by_bot:
            raise _bad_request("message can't be edited")
        result = self._edit(stored, {}, inline_markup)
        stored.reply_markup = raw_markup
        return result

    def _api_deleteMessage(self, params: Mapping) -> bool:
        _, stored = self._find_message(params, not_found="message to delete not found")
        stored.deleted = True
        return True

    def _api_sendChatAction(self, params: Mapping) -> bool:
        self._chat(params)
        if self._str(params, "action") not in _CHAT_ACTIONS:
            raise _bad_request("wrong parameter action in request")
        return True

    def _api_answerCallbackQuery(self, params: Mapping) -> bool:
        query_id = self._str(params, "callback_query_id") or ""
        query = self._callback_queries.get(query_id)
        if query is None or query["answered"]:
            raise _bad_request("query is too old and response timeout expired or query ID is invalid")
        text = self._str(params, "text")
        if text is not None and len(text) > MAX_CALLBACK_ANSWER_LENGTH:
            raise _bad_request("MESSAGE_TOO_LONG")
        query["answered"] = True
        self._callback_answers.append(
            {
                "callback_query_id": query_id,
                "text": text,
                "show_alert": self._bool(params, "show_alert"),
                "url": self._str(params, "url"),
            }
        )
        return True

    @staticmethod
    def _commands_key(params: Mapping) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        scope_key = json.dumps(scope, sort_keys=True) if isinstance(scope, dict) else str(scope)
        return scope_key, str(params.get("language_code") or "")

    def _api_setMyCommands(self, params: Mapping) -> bool:
        commands = params.get("commands")
        if commands is None:
            commands = []
        if not isinstance(commands, list):
            raise _bad_request("can't parse commands JSON object")
        if len(commands) > 100:
            raise _bad_request("too many commands specified")
        for command in commands:
            if not isinstance(command, dict):
                raise _bad_request("can't parse BotCommand: BotCommand must be an Object")
            for key in ("command", "description"):
                if not isinstance(command.get(key), str):
                    raise _bad_request(f"can't parse BotCommand: Can't find field \"{key}\"")
            if not _COMMAND_NAME.fullmatch(command["command"]):
                raise _bad_request("BOT_COMMAND_INVALID")
            description = command["description"].strip()
            if not description:
                raise _bad_request("command description must be non-empty")
            if len(description) > 256:
                raise _bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        self._commands[self._commands_key(params)] = [
            {"command": c["command"], "description": c["description"]} for c in commands
        ]
        return True

    def _api_getMyCommands(self, params: Mapping) -> list[dict]:
        return copy.deepcopy(self._commands.get(self._commands_key(params), []))

    def _api_deleteMyCommands(self, params: Mapping) -> bool:
        self._commands.pop(self._commands_key(params), None)
        return True

    def _api_getFile(self, params: Mapping) -> dict:
        file_id = self._str(params, "file_id")
        if not file_id or file_id not in self._files:
            raise _bad_request("invalid file_id")
        file_path, content = self._files[file_id]
        if len(content) > MAX_DOWNLOAD_BYTES:
            raise _bad_request("file is too big")
        return {"file_id": file_id, "file_unique_id": file_id.replace("-file-", "-unique-"), "file_size": len(content), "file_path": file_path}

    def _api_close(self, params: Mapping) -> bool:
        return True

    def _api_logOut(self, params: Mapping) -> bool:
        return True

    # ---------------------------------------------------------------- test API: actors

    def user(self, id: int, first_name: str = "Ann", username: str | None = None, **extra: Any) -> dict:
        """A Telegram ``User`` dict for a human user (registered for later lookups)."""
        user = {"id": id, "is_bot": False, "first_name": first_name}
        if username:
            user["username"] = username
        user.update(extra)
        with self._lock:
            self._users[id] = user
        return dict(user)

    def private_chat(self, user: dict | int) -> dict:
        """The private ``Chat`` between ``user`` and the bot (registered, so the bot may write)."""
        user = self._user(user)
        chat = {"id": user["id"], "type": "private", "first_name": user["first_name"]}
        if "username" in user:
            chat["username"] = user["username"]
        return self.add_chat(chat)

    def group_chat(self, id: int, title: str = "Test group", *, supergroup: bool = False) -> dict:
        """A group ``Chat`` (use a negative id, as Telegram does); registered."""
        return self.add_chat({"id": id, "type": "supergroup" if supergroup else "group", "title": title})

    def add_chat(self, chat: dict) -> dict:
        """Register any ``Chat`` dict; sending to an unregistered chat fails like Telegram."""
        with self._lock:
            self._chats[chat["id"]] = dict(chat)
        return dict(chat)

    def _user(self, user: dict | int) -> dict:
        if isinstance(user, dict):
            with self._lock:
                self._users.setdefault(user["id"], dict(user))
            return dict(user)
        with self._lock:
            known = self._users.get(user)
        return dict(known) if known else self.user(user)

    def _chat_arg(self, chat: dict | int) -> dict:
        if isinstance(chat, dict):
            with self._lock:
                known = self._chats.get(chat["id"])
            return dict(known) if known else self.add_chat(chat)
        with self._lock:
            known = self._chats.get(chat)
            if known is None and chat in self._users:
                return self.private_chat(chat)
        if known is None:
            raise ValueError(f"unknown chat {chat}: create it with private_chat() or group_chat()")
        return dict(known)

    # ---------------------------------------------------------------- test API: incoming

    def _user_message(self, chat: dict | int, user: dict | int, reply_to_message_id: int | None, **fields: Any) -> dict:
        chat_obj, user_obj = self._chat_arg(chat), self._user(user)
        with self._lock:
            message: dict[str, Any] = {
                "message_id": self._new_message_id(chat_obj["id"]),
                "from": user_obj,
                "chat": chat_obj,
                "date": int(time.time()),
            }
            if reply_to_message_id is not None:
                replied = self._replied(chat_obj["id"], reply_to_message_id)
                if replied is None:
                    raise ValueError(f"no message {reply_to_message_id} in chat {chat_obj['id']} to reply to")
                message["reply_to_message"] = replied
            message.update(fields)
            self._store_message(message, by_bot=False)
        return message

    def _visible_to_bot(self, message: dict) -> bool:
        """Whether a bot in group privacy mode would receive this group message."""
        if not self._group_privacy or message["chat"]["type"] not in ("group", "supergroup"):
            return True
        text = message.get("text", "")
        username = self._bot_user["username"].lower()
        for entity in message.get("entities", []):
            token = text[entity["offset"] : entity["offset"] + entity["length"]].lower()
            if entity["type"] == "bot_command" and ("@" not in token or token.endswith("@" + username)):
                return True
            if entity["type"] == "mention" and token == "@" + username:
                return True
        replied = message.get("reply_to_message") or {}
        return replied.get("from", {}).get("id") == self._bot_user["id"]

    def send_text(
        self,
        chat: dict | int,
        user: dict | int,
        text: str,
        reply_to_message_id: int | None = None,
        entities: list[dict] | None = None,
    ) -> dict:
        """Queue a text message from ``user``; returns the ``Message`` dict.

        bot_command and mention entities are added as Telegram clients do unless
        ``entities`` is given. ``reply_to_message_id`` embeds that stored message (the bot's
        or a user's) as ``reply_to_message``.
        """
        fields: dict[str, Any] = {"text": text}
        found = entities if entities is not None else _auto_entities(text)
        if found:
            fields["entities"] = found
        message = self._user_message(chat, user, reply_to_message_id, **fields)
        if self._visible_to_bot(message):
            self._enqueue({"message": message})
        return copy.deepcopy(message)

    def send_update(self, update: dict) -> dict:
        """Queue any raw update (``update_id`` assigned if missing); returns it.

        Messages inside it are stored so later replies, edits and button presses can refer
        to them.
        """
        update = copy.deepcopy(update)
        with self._lock:
            for key in ("message", "edited_message", "channel_post", "edited_channel_post"):
                message = update.get(key)
                if isinstance(message, dict) and "chat" in message and "message_id" in message:
                    from_bot = message.get("from", {}).get("id") == self._bot_user["id"]
                    self._store_message(message, by_bot=from_bot)
            query = update.get("callback_query")
            if isinstance(query, dict) and "id" in query:  # so answerCallbackQuery accepts it
                self._callback_queries[str(query["id"])] = {"answered": False, "query": copy.deepcopy(query)}
        return self._enqueue(update)

    def _file(self, prefix: str) -> dict:
        with self._lock:
            n = next(self._file_ids)
        return {"file_id": f"{prefix}-file-{n}", "file_unique_id": f"{prefix}-unique-{n}"}

    def send_sticker(self, chat: dict | int, user: dict | int, emoji: str = "👍") -> dict:
        """Queue a sticker message."""
        sticker = {
            **self._file("sticker"),
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
        }
        message = self._user_message(chat, user, None, sticker=sticker)
        self._enqueue({"message": message})
        return copy.deepcopy(message)

    def send_photo(self, chat: dict | int, user: dict | int, caption: str | None = None) -> dict:
        """Queue a photo message (two sizes, optional caption)."""
        photo = [
            {**self._file("photo"), "width": 90, "height": 60, "file_size": 1200},
            {**self._file("photo"), "width": 1280, "height": 853, "file_size": 98000},
        ]
        fields: dict[str, Any] = {"photo": photo}
        if caption is not None:
            fields["caption"] = caption
        message = self._user_message(chat, user, None, **fields)
        self._enqueue({"message": message})
        return copy.deepcopy(message)

    def send_document(
        self, chat: dict | int, user: dict | int, file_name: str, content: bytes, mime_type: str = "text/plain", caption: str | None = None
    ) -> dict:
        """Queue a document message; the bot can fetch its bytes with getFile and the file URL."""
        document = {**self._file("document"), "file_name": file_name, "mime_type": mime_type, "file_size": len(content)}
        with self._lock:
            self._files[document["file_id"]] = (f"documents/file_{len(self._files)}{_suffix(file_name)}", bytes(content))
        fields: dict[str, Any] = {"document": document}
        if caption is not None:
            fields["caption"] = caption
        message = self._user_message(chat, user, None, **fields)
        self._enqueue({"message": message})
        return copy.deepcopy(message)

    def send_voice(self, chat: dict | int, user: dict | int, duration: int = 3) -> dict:
        """Queue a voice message."""
        voice = {**self._file("voice"), "duration": duration, "mime_type": "audio/ogg", "file_size": 4000}
        message = self._user_message(chat, user, None, voice=voice)
        self._enqueue({"message": message})
        return copy.deepcopy(message)

    def edit_text(self, original_message: dict, new_text: str) -> dict:
        """Queue an ``edited_message`` update: the user edited ``original_message``."""
        with self._lock:
            key = (original_message["chat"]["id"], original_message["message_id"])
            stored = self._messages.get(key)
            if stored is None:
                raise ValueError(f"no stored message {key}")
            message = copy.deepcopy(stored.message)
            message["text"] = new_text
            message["edit_date"] = int(time.time())
            found = _auto_entities(new_text)
            if found:
                message["entities"] = found
            else:
                message.pop("entities", None)
            self._store_message(message, by_bot=False)
        self._enqueue({"edited_message": message})
        return copy.deepcopy(message)

    def press_button(
        self, message: SentMessage | dict, callback_data: str, user: dict | int, *, check: bool = True
    ) -> dict:
        """Queue a ``callback_query`` as if ``user`` pressed a button of a bot message.

        The query carries the message as currently stored. With ``check`` (default) the
        message must have a button with this ``callback_data``, since a real client can
        only press buttons that exist. Returns the ``CallbackQuery`` dict.
        """
        if isinstance(message, SentMessage):
            chat_id, message_id = message.chat_id, message.message_id
        else:
            chat_id, message_id = message["chat"]["id"], message["message_id"]
        user_obj = self._user(user)
        with self._lock:
            stored = self._messages.get((chat_id, message_id))
            if stored is None or stored.deleted:
                raise ValueError(f"no message {message_id} in chat {chat_id}")
            if check:
                rows = stored.message.get("reply_markup", {}).get("inline_keyboard", [])
                available = [b.get("callback_data") for row in rows for b in row if "callback_data" in b]
                if callback_data not in available:
                    raise ValueError(f"message has no button with callback_data {callback_data!r}; has {available}")
            query = {
                "id": str(next(self._query_ids)),
                "from": user_obj,
                "message": copy.deepcopy(stored.message),
                "chat_instance": str(-abs(chat_id) * 1000 - 7),
                "data": callback_data,
            }
            self._callback_queries[query["id"]] = {"answered": False, "query": query}
        self._enqueue({"callback_query": query})
        return copy.deepcopy(query)

    # ---------------------------------------------------------------- test API: inspection

    def sent_messages(self, chat_id: int | None = None) -> list[SentMessage]:
        """The bot's messages (current state, deleted ones excluded), oldest first."""
        with self._lock:
            stored = [
                s
                for (cid, _), s in sorted(self._messages.items(), key=lambda kv: kv[1].seq)
                if s.by_bot and not s.deleted and (chat_id is None or cid == chat_id)
            ]
            return [self._snapshot(s) for s in stored]

    def calls(self, method: str | None = None) -> list[Call]:
        """Every request answered so far (optionally only ``method``), oldest first."""
        with self._lock:
            return [c for c in self._calls if method is None or c.method == method]

    def errors(self, *, include_injected: bool = False) -> list[Call]:
        """Every error answer: 4xx means Telegram would have refused the request.

        (A 500 can only come from a bug in this fake, and is listed too so it cannot go
        unnoticed.) Failures injected with :meth:`fail_next` / :meth:`flood_next` are left
        out unless ``include_injected``: they say nothing about the bot's behaviour.
        """
        with self._lock:
            return [
                c
                for c in self._calls
                if c.status is not None and c.status >= 400 and (include_injected or not c.injected)
            ]

    def callback_answers(self) -> list[dict]:
        """The answerCallbackQuery calls that succeeded (id, text, show_alert, url)."""
        with self._lock:
            return copy.deepcopy(self._callback_answers)

    def pending_updates(self) -> list[dict]:
        """Updates queued but not yet confirmed by the bot (via getUpdates offset)."""
        with self._lock:
            return copy.deepcopy(self._updates)

    def commands(self, scope: dict | None = None, language_code: str = "") -> list[dict]:
        """The command list last set with setMyCommands for this scope/language."""
        with self._lock:
            return self._api_getMyCommands({"scope": scope, "language_code": language_code})

    def webhook(self) -> dict | None:
        """The webhook set with setWebhook, if any."""
        with self._lock:
            return copy.deepcopy(self._webhook)

    def describe_recent(self, count: int = 20) -> str:
        """The last ``count`` interesting calls (idle getUpdates left out), one per line."""
        with self._lock:
            interesting = [
                c
                for c in self._calls
                if not (c.method == "getUpdates" and c.status == 200 and not c.response["result"])
            ]
        return "\n".join(str(c) for c in interesting[-count:]) or "(no calls)"

    # ---------------------------------------------------------------- test API: failures

    def fail_next(
        self,
        method: str,
        status: int,
        description: str,
        *,
        count: int = 1,
        parameters: dict | None = None,
    ) -> None:
        """Answer the next ``count`` calls of ``method`` with this error instead of serving them.

        E.g. ``fail_next("sendMessage", 403, "Forbidden: bot was blocked by the user")``.
        """
        with self._lock:
            queue = self._injected.setdefault(method, [])
            queue.extend(_ApiError(status, description, parameters) for _ in range(count))

    def flood_next(self, method: str, retry_after: int = 1, count: int = 1) -> None:
        """Telegram's flood control for the next ``count`` calls: 429 with retry_after."""
        self.fail_next(
            method,
            429,
            f"Too Many Requests: retry after {retry_after}",
            count=count,
            parameters={"retry_after": retry_after},
        )

    # ---------------------------------------------------------------- test API: waiting

    def _timeout_error(self, timeout: float, what: str) -> AssertionError:
        errors = "\n".join(str(c) for c in self.errors(include_injected=True)) or "(none)"
        return AssertionError(
            f"timed out after {timeout}s waiting for {what}\n"
            f"recent calls:\n{self.describe_recent()}\nerror answers:\n{errors}"
        )

    def wait_for(self, predicate: Callable[[FakeBotApi], Any], timeout: float = 5.0, what: str = "condition") -> Any:
        """Block until ``predicate(server)`` is truthy and return its value.

        For sync code only: blocking the event loop that runs the bot would starve it, so
        inside async tests use :meth:`async_wait_for` (calling this there raises).
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("wait_for() would block the running event loop; use async_wait_for()")
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                result = predicate(self)
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._timeout_error(timeout, what)
                self._changed.wait(min(remaining, 0.05))

    async def async_wait_for(
        self, predicate: Callable[[FakeBotApi], Any], timeout: float = 5.0, what: str = "condition"
    ) -> Any:
        """Like :meth:`wait_for` but yields to the event loop while waiting."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate(self)
            if result:
                return result
            if time.monotonic() >= deadline:
                raise self._timeout_error(timeout, what)
            await asyncio.sleep(0.005)

    def _has_messages(self, chat_id: int, count: int) -> Callable[[FakeBotApi], list[SentMessage] | None]:
        def check(server: FakeBotApi) -> list[SentMessage] | None:
            messages = server.sent_messages(chat_id)
            return messages if len(messages) >= count else None

        return check

    def wait_for_messages(self, chat_id: int, count: int = 1, timeout: float = 5.0) -> list[SentMessage]:
        """Block until the bot has sent at least ``count`` messages to ``chat_id``; return them all."""
        return self.wait_for(self._has_messages(chat_id, count), timeout, f"{count} bot message(s) in chat {chat_id}")

    async def async_wait_for_messages(self, chat_id: int, count: int = 1, timeout: float = 5.0) -> list[SentMessage]:
        """Async :meth:`wait_for_messages`."""
        return await self.async_wait_for(
            self._has_messages(chat_id, count), timeout, f"{count} bot message(s) in chat {chat_id}"
        )


@pytest.fixture
def fake_bot_api() -> Iterator[FakeBotApi]:
    """A started :class:`FakeBotApi`, stopped afterwards; fails the test if its thread lingers.

    Use it by importing it into a conftest.py or test module
    (``from tests.fake_bot_api import fake_bot_api``), or build your own around
    ``with FakeBotApi(...) as server``.
    """
    with FakeBotApi() as server:
        yield server
    leftover = [t for t in threading.enumerate() if t.name == "FakeBotApi"]
    assert not leftover, f"FakeBotApi thread still running: {leftover}"
