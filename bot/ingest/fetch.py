"""Fetching pages and feeds politely and safely: the only place that talks HTTP to the web.

Every request goes through ``Fetcher.get``, which

* accepts only ``http`` and ``https`` URLs;
* resolves the host and refuses private, loopback, link-local, multicast and reserved
  addresses (a server-side request forgery guard: a link sent to the bot must not reach
  the machine's own services or a cloud metadata endpoint), unless the host is listed in
  ``ALLOW_PRIVATE_HOSTS``; the connection then goes to the address that was checked, so a
  second DNS answer cannot swap in another one;
* follows at most ``MAX_REDIRECTS`` redirects itself, each target checked again (scheme,
  address, robots.txt, per-host limit);
* honours robots.txt for its User-Agent (RFC 9309: a missing robots.txt allows all, one
  that cannot be fetched disallows all);
* allows at most ``HOST_REQUESTS_PER_MINUTE`` requests per host in any minute: more are
  refused for now ("try again later"), and a feed's unfetched items wait for the next poll;
* stops at ``FETCH_TIMEOUT_SECONDS`` for the whole request and at ``FETCH_MAX_BYTES``
  (checked against Content-Length first, then while reading).

Failures are ``FetchError`` (an ``ArticleError`` whose path is the URL) with a reason a
person can act on; ``transient`` marks those worth trying again later.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit
from urllib.robotparser import RobotFileParser

import httpx

from bot.config import Settings
from bot.errors import ArticleError

MAX_REDIRECTS = 5
RATE_WINDOW_SECONDS = 60.0
ROBOTS_MAX_BYTES = 500_000  # RFC 9309 asks crawlers to read at least 500 KiB of robots.txt
HTML_TYPES = ("text/html", "application/xhtml+xml")


class FetchError(ArticleError):
    """A URL that could not be fetched: ``path`` is the URL, ``reason`` says why."""

    def __init__(self, url: str, reason: str, transient: bool = False):
        super().__init__(url, reason)
        self.transient = transient

    def __reduce__(self):
        return (type(self), (self.path, self.reason, self.transient))


@dataclass(frozen=True)
class Fetched:
    url: str  # the URL asked for
    final_url: str  # after redirects
    status: int
    content_type: str  # media type, lower case, without parameters
    charset: str | None
    content: bytes
    headers: dict[str, str]


class HostRateLimiter:
    """At most ``per_window`` requests per host in any ``window`` seconds (thread-safe)."""

    def __init__(self, per_window: int, window: float = RATE_WINDOW_SECONDS):
        self.per_window = per_window
        self.window = window
        self._times: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def take(self, host: str) -> bool:
        now = time.monotonic()
        with self._lock:
            times = self._times.setdefault(host, deque())
            while times and now - times[0] >= self.window:
                times.popleft()
            if len(times) >= self.per_window:
                return False
            times.append(now)
            return True


def _host_key(parts) -> str:
    host = (parts.hostname or "").lower()
    return f"{host}:{parts.port}" if parts.port else host


def _refused_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    for flag, what in (
        ("is_loopback", "a loopback"),
        ("is_link_local", "a link-local"),
        ("is_private", "a private"),
        ("is_multicast", "a multicast"),
        ("is_reserved", "a reserved"),
        ("is_unspecified", "an unspecified"),
    ):
        if getattr(address, flag):
            return what
    return None


class Fetcher:
    """One run's HTTP client: robots.txt cached per origin, the per-host limiter shared."""

    def __init__(self, settings: Settings, limiter: HostRateLimiter | None = None):
        self.settings = settings
        self.limiter = limiter or HostRateLimiter(settings.host_requests_per_minute)
        self._robots: dict[str, RobotFileParser | None] = {}
        self._client = httpx.Client(
            follow_redirects=False,
            timeout=httpx.Timeout(settings.fetch_timeout_seconds),
            headers={"User-Agent": settings.fetch_user_agent, "Accept-Encoding": "gzip, deflate"},
            trust_env=False,  # no proxy from the environment: the address check must hold
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the one public request ----------------------------------------------------------

    def get(self, url: str, *, accept: tuple[str, ...] = HTML_TYPES, headers: dict[str, str] | None = None) -> Fetched:
        """GET ``url`` with every check above; raises ``FetchError``.

        ``accept``: media types (prefixes) the caller can read; others are refused.
        A 304 (when ``headers`` ask conditionally) is returned, not raised.
        """
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            scheme = urlsplit(current).scheme.lower()
            if scheme not in ("http", "https"):
                raise FetchError(url, f"only http and https links can be added, not {scheme or 'a bare path'}:")
            self._check_robots(url, current)
            response_status, response_headers, content = self._request(url, current, headers or {}, accept)
            if response_status in (301, 302, 303, 307, 308):
                location = response_headers.get("location")
                if not location:
                    raise FetchError(url, f"redirect ({response_status}) without a Location")
                current = urljoin(current, location)
                continue
            media, charset = _media_type(response_headers.get("content-type", ""))
            return Fetched(url, current, response_status, media, charset, content, response_headers)
        raise FetchError(url, f"more than {MAX_REDIRECTS} redirects")

    # -- pieces --------------------------------------------------------------------------

    def _pinned(self, url: str, current: str) -> tuple[str, dict[str, str], dict]:
        """The request URL aimed at the checked address, its Host header and TLS name."""
        parts = urlsplit(current)
        if parts.scheme not in ("http", "https"):
            raise FetchError(url, f"only http and https links can be added, not {parts.scheme or 'a bare path'}:")
        host = parts.hostname
        if not host:
            raise FetchError(url, "the link has no host name")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise FetchError(url, "the link's port is not a number") from None
        allowed = set(self.settings.allow_private_hosts)
        exempt = "*" in allowed or host.lower() in allowed or _host_key(parts) in allowed
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise FetchError(url, f"cannot resolve {host}: {exc}", transient=True) from None
        addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
        if not exempt:
            for address in addresses:
                what = _refused_address(address)
                if what is not None:
                    raise FetchError(
                        url, f"refused: {host} is {what} address ({address}); only public web servers are fetched"
                    )
        address = addresses[0]
        shown = f"[{address}]" if address.version == 6 else str(address)
        netloc = f"{shown}:{port}"
        target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        host_header = host if parts.port is None else f"{host}:{parts.port}"
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        return target, {"Host": host_header}, extensions

    def _request(self, url: str, current: str, headers: dict[str, str], accept: tuple[str, ...],
                 max_bytes: int | None = None) -> tuple[int, dict[str, str], bytes]:
        target, host_header, extensions = self._pinned(url, current)
        host = _host_key(urlsplit(current))
        if not self.limiter.take(host):
            raise FetchError(
                url,
                f"too many requests to {host} ({self.limiter.per_window} a minute); try again later",
                transient=True,
            )
        limit = max_bytes or self.settings.fetch_max_bytes
        deadline = time.monotonic() + self.settings.fetch_timeout_seconds
        timeout = self.settings.fetch_timeout_seconds
        try:
            request = self._client.build_request("GET", target, headers={**headers, **host_header}, extensions=extensions)
            response = self._client.send(request, stream=True)
            try:
                status = response.status_code
                response_headers = {k.lower(): v for k, v in response.headers.items()}
                if status in (301, 302, 303, 307, 308, 304):
                    return status, response_headers, b""
                if status == 404 or status == 410:
                    raise FetchError(url, f"not found (HTTP {status})")
                if status == 429 or status >= 500:
                    raise FetchError(url, f"the server answered HTTP {status}; try again later", transient=True)
                if status >= 400:
                    raise FetchError(url, f"refused by the server (HTTP {status})")
                media, _ = _media_type(response_headers.get("content-type", ""))
                if accept and not media.startswith(accept):
                    raise FetchError(url, f"not a web page: the server says it is {media or 'of no stated type'}")
                declared = response_headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise FetchError(url, f"too large: {int(declared):,} bytes (the limit is {limit:,})")
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise FetchError(url, f"too large: over {limit:,} bytes")
                    if time.monotonic() > deadline:
                        raise FetchError(url, f"timed out after {timeout:g} s", transient=True)
                    chunks.append(chunk)
                return status, response_headers, b"".join(chunks)
            finally:
                response.close()
        except httpx.TimeoutException:
            raise FetchError(url, f"timed out after {timeout:g} s", transient=True) from None
        except httpx.HTTPError as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise FetchError(url, f"cannot connect: {reason}", transient=True) from None

    def _check_robots(self, url: str, current: str) -> None:
        parts = urlsplit(current)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._robots:
            self._robots[origin] = self._read_robots(url, origin)
        robots = self._robots[origin]
        if robots is None:
            raise FetchError(url, f"robots.txt of {parts.netloc} could not be read; not fetched", transient=True)
        if not robots.can_fetch(self.settings.fetch_user_agent, current):
            raise FetchError(url, f"disallowed by {origin}/robots.txt")

    def _read_robots(self, url: str, origin: str) -> RobotFileParser | None:
        """The origin's rules; everything allowed when it has none (4xx); None when unreachable."""
        robots = RobotFileParser()
        robots_url = origin + "/robots.txt"
        current = robots_url
        try:
            for _ in range(MAX_REDIRECTS + 1):
                status, headers, content = self._request(url, current, {}, (), ROBOTS_MAX_BYTES)
                if status in (301, 302, 303, 307, 308) and headers.get("location"):
                    current = urljoin(current, headers["location"])
                    continue
                break
        except FetchError as exc:
            if exc.reason.startswith(("not found", "refused by the server")):
                robots.parse([])
                return robots
            if exc.reason.startswith("too large"):
                robots.parse([])  # unreadable rules are no reason to refuse every page
                return robots
            if exc.reason.startswith("refused:"):
                raise
            return None
        robots.parse(content.decode("utf-8", errors="replace").splitlines())
        return robots


def _media_type(header: str) -> tuple[str, str | None]:
    media, _, params = header.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "charset" and value:
            charset = value.strip().strip('"').lower()
    try:
        if charset:
            "".encode(charset)
    except LookupError:
        charset = None
    return media.strip().lower(), charset
