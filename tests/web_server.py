"""The web server of the intake tests (news pages, feeds and broken ones on 127.0.0.1) lives in
``bot.news_pages`` because ``eval update`` serves its benchmark feed with it too."""

from bot.news_pages import Request, Route, WebServer

__all__ = ["Request", "Route", "WebServer"]
