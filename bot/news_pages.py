"""Realistic news pages and feeds built from plain articles, for the intake tests and
``python -m bot eval intake``.

A page wraps the article in what real news sites put around it: navigation, a cookie
banner, a byline, an ad slot and a "Read more" link inside the story, a photo with its
caption, share buttons, related links, a newsletter box, comments and a footer, with the metadata in ``<meta>`` tags (and, in some layouts, JSON-LD).
Four layouts (``LAYOUTS``) differ in markup the way real sites do, so extraction is not
measured on one template.
"""

from __future__ import annotations

import html
import json
from datetime import date as Date
from email.utils import format_datetime
from datetime import datetime, timezone

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
