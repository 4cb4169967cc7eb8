"""Realistic news pages and feeds built from plain articles, for the intake tests and
``python -m bot eval intake``.

A page wraps the article in what real news sites put around it: navigation, a cookie
banner, a byline, an ad slot and a "Read more" link inside the story, a photo with its
caption, share buttons, related links, a newsletter box, comments and a footer, with the metadata in ``<meta>`` tags (and, in some layouts, JSON-LD).
Four layouts (``LAYOUTS``) differ in markup the way real sites do, so extraction is not
measured on one template.

``WebServer`` serves such pages and feeds (and broken ones) on 127.0.0.1 only: the intake
tests and ``eval update`` fetch from it; nothing here reaches beyond loopback.
"""

from __future__ import annotations

import html
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import date as Date
from datetime import datetime, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LAYOUTS = ("article", "divs", "jsonld", "timeline")


def _paragraphs(body: str) -> list[str]:
    return [" ".join(p.split()) for p in body.split("\n") if p.strip()]


def _human_date(iso: str) -> str:
    return Date.fromisoformat(iso).strftime("%B %-d, %Y")


def news_page(
    title: str,
    body: str,
    *,
    outlet: str,
    date: str,
    url: str,
    author: str = "Staff Reporter",
    layout: str = "article",
    related: tuple[str, ...] = ("Markets close higher after a volatile week", "Five things to know this morning"),
) -> str:
    """A whole HTML page for one article. ``date``: ISO ``YYYY-MM-DD``."""
    e = html.escape
    paragraphs = _paragraphs(body)
    middle = max(1, len(paragraphs) // 2)
    figure = (
        '<figure class="wp-caption"><img src="/img/lead.jpg" alt="">'
        f"<figcaption>A file photo used for illustration. Photo: {e(outlet)} archive</figcaption></figure>"
    )
    # Inside the story, as sites do: an ad slot and a "Read more" link after the first paragraph.
    inline = (
        '<div class="ad-slot" aria-hidden="true"><span class="ad-label">Advertisement</span><div id="gpt-ad-1"></div></div>'
        f'<p class="read-more"><strong>Read more:</strong> <a href="/r/inline">{e(related[0] if related else "More news")}</a></p>'
    )
    text = (
        "".join(f"<p>{e(p)}</p>" for p in paragraphs[:1]) + inline
        + "".join(f"<p>{e(p)}</p>" for p in paragraphs[1:middle]) + figure
        + "".join(f"<p>{e(p)}</p>" for p in paragraphs[middle:])
    )
    meta = (
        f'<meta property="og:site_name" content="{e(outlet)}">'
        f'<meta property="og:title" content="{e(title)}">'
        f'<meta property="og:type" content="article">'
        f'<meta property="og:url" content="{e(url)}">'
        f'<link rel="canonical" href="{e(url)}">'
        f'<meta name="author" content="{e(author)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="description" content="{e(paragraphs[0][:150] if paragraphs else title)}">'
    )
    if layout != "jsonld":
        meta += f'<meta property="article:published_time" content="{date}T08:30:00+00:00">'
    head = f"<head><meta charset='utf-8'><title>{e(title)} | {e(outlet)}</title>{meta}"
    if layout == "jsonld":
        ld = {"@context": "https://schema.org", "@type": "NewsArticle", "headline": title, "datePublished": f"{date}T08:30:00Z",
              "author": {"@type": "Person", "name": author}, "publisher": {"@type": "Organization", "name": outlet}}
        head += f'<script type="application/ld+json">{json.dumps(ld)}</script>'
    head += "<script>window.dataLayer=window.dataLayer||[];function gtag(){dataLayer.push(arguments);}</script></head>"
    nav = (
        '<header class="site-header"><a class="logo" href="/">' + e(outlet) + "</a><nav class=\"main-nav\"><ul>"
        + "".join(f'<li><a href="/{s.lower()}">{s}</a></li>' for s in ("Home", "World", "Business", "Sport", "Opinion", "Tech"))
        + '</ul></nav><form class="search"><input name="q" placeholder="Search"></form></header>'
    )
    cookie = (
        '<div id="cookie-banner" class="cookie-consent"><p>We use cookies to improve your experience and for '
        'advertising. By continuing you agree to our cookie policy.</p><button>Accept all</button><button>Manage settings</button></div>'
    )
    byline = f'<div class="byline">By <a rel="author" href="/authors/x">{e(author)}</a></div>'
    when = f'<time datetime="{date}T08:30:00Z">{_human_date(date)}</time>'
    share = '<div class="share"><a href="#">Share on Facebook</a> <a href="#">Share on X</a> <a href="#">Email</a></div>'
    related_box = (
        '<aside class="related"><h3>Related stories</h3><ul>'
        + "".join(f'<li><a href="/r/{i}">{e(r)}</a></li>' for i, r in enumerate(related))
        + "</ul></aside>"
    )
    newsletter = '<div class="newsletter"><h4>Get the morning briefing</h4><p>Sign up for our daily newsletter.</p><input type="email"><button>Subscribe</button></div>'
    comments = (
        '<section id="comments" class="comments"><h3>3 Comments</h3>'
        '<div class="comment"><p class="comment-author">reader123</p><p>This is exactly what I expected, nobody listens.</p></div>'
        '<div class="comment"><p class="comment-author">jk</p><p>Great reporting as always.</p></div>'
        '<h3>Leave a Reply</h3><form><textarea></textarea><button>Post Comment</button></form></section>'
    )
    footer = (
        f'<footer class="site-footer"><p>© 2024 {e(outlet)}. All rights reserved.</p><ul><li><a href="/about">About us</a></li>'
        '<li><a href="/privacy">Privacy policy</a></li><li><a href="/contact">Contact</a></li></ul></footer>'
    )
    if layout == "divs":
        main = (
            f'<div class="container"><div class="story"><h1 class="story-title">{e(title)}</h1>{byline}'
            f'<div class="story-meta">{when}</div>{share}<div class="story-body">{text}</div>{share}</div>{related_box}</div>'
        )
    elif layout == "timeline":
        main = (
            f'<main><article class="post"><header><h1 class="entry-title">{e(title)}</h1>'
            f'<p class="meta">Published {when} · {byline}</p></header><div class="entry-content">{text}</div>'
            f'<div class="tags">Tags: <a href="/t/news">news</a></div></article>{newsletter}{related_box}</main>'
        )
    else:
        main = (
            f'<main><article><h1>{e(title)}</h1>{byline}<p class="dateline">{when}</p>{share}'
            f'<div class="article-body">{text}</div></article>{related_box}{newsletter}</main>'
        )
    return f"<!DOCTYPE html><html lang='en'>{head}<body>{cookie}{nav}{main}{comments}{footer}</body></html>"


def rss_feed(title: str, link: str, items: list[dict]) -> str:
    """RSS 2.0: items with title, link, guid and pubDate (``date`` ISO)."""
    e = html.escape
    entries = "".join(
        f"<item><title>{e(i['title'])}</title><link>{e(i['link'])}</link><guid>{e(i.get('guid', i['link']))}</guid>"
        f"<pubDate>{format_datetime(datetime.fromisoformat(i['date']).replace(tzinfo=timezone.utc))}</pubDate></item>"
        for i in items
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        f"<title>{e(title)}</title><link>{e(link)}</link><description>Latest news</description>{entries}</channel></rss>"
    )


def atom_feed(title: str, link: str, items: list[dict]) -> str:
    """Atom 1.0: entries with title, link, id and updated (``updated`` or ``date``)."""
    e = html.escape
    entries = "".join(
        f"<entry><title>{e(i['title'])}</title><link href=\"{e(i['link'])}\"/><id>{e(i.get('guid', i['link']))}</id>"
        f"<updated>{i.get('updated', i['date'] + 'T08:30:00Z')}</updated></entry>"
        for i in items
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        f'<title>{e(title)}</title><link href="{e(link)}"/><id>{e(link)}</id><updated>2024-01-01T00:00:00Z</updated>{entries}</feed>'
    )


# -- a web server on 127.0.0.1 ---------------------------------------------------------


@dataclass
class Route:
    body: bytes
    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    chunked: bool = False
    etag: str | None = None
    last_modified: str | None = None


@dataclass
class Request:
    path: str
    headers: dict[str, str]


class WebServer:
    """Routes set with ``route(path, body, ...)``; every request recorded with its headers.

    ETag and Last-Modified are honoured (304) when a route has them; ``delay`` holds the
    response back (a slow server); ``chunked`` sends a body without Content-Length.
    """

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                with server._lock:
                    server.requests.append(Request(self.path, {k.lower(): v for k, v in self.headers.items()}))
                    route = server.routes.get(self.path) or server.routes.get(self.path.partition("?")[0])
                if route is None:
                    route = Route(b"<html><body><h1>Not found</h1></body></html>", status=404)
                if route.delay:
                    time.sleep(route.delay)
                if (route.etag and self.headers.get("If-None-Match") == route.etag) or (
                    route.last_modified and self.headers.get("If-Modified-Since") == route.last_modified
                ):
                    self.send_response(304)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                try:
                    self.send_response(route.status)
                    self.send_header("Content-Type", route.content_type)
                    for key, value in route.headers.items():
                        self.send_header(key, value)
                    if route.etag:
                        self.send_header("ETag", route.etag)
                    if route.last_modified:
                        self.send_header("Last-Modified", route.last_modified)
                    if route.chunked:
                        self.send_header("Transfer-Encoding", "chunked")
                        self.end_headers()
                        for start in range(0, len(route.body), 65536):
                            piece = route.body[start : start + 65536]
                            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                        self.wfile.write(b"0\r\n\r\n")
                    else:
                        self.send_header("Content-Length", str(len(route.body)))
                        self.end_headers()
                        self.wfile.write(route.body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (size cap): fine
                    self.close_connection = True

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address) -> None:  # a client hanging up is normal here
                pass

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> WebServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"http://{self.host}{path}"

    def route(self, path: str, body: str | bytes, **options) -> str:
        with self._lock:
            self.routes[path] = Route(body.encode("utf-8") if isinstance(body, str) else body, **options)
        return self.url(path)

    def requests_for(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]
