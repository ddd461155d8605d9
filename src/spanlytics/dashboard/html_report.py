"""``spanlytics report --html FILE``: the overview, with every endpoint and consumer, as one
self-contained HTML file (CSS inline, charts as inline SVG, no script, nothing fetched) to
attach to a ticket or a mail::

    html = build_html("./spanlytics.db", since_s=86400)

Escaped as the dashboard is: the file may be opened by someone who trusts it more than the
data in it deserves.
"""

from __future__ import annotations

import os
import time

from markupsafe import Markup

from spanlytics.dashboard.params import Window
from spanlytics.dashboard.render import STATIC, render
from spanlytics.dashboard.views import overview
from spanlytics.destinations.any_store import is_postgres_url, open_reader
from spanlytics.destinations.postgres.options import redact_url
from spanlytics.durations import check_window

__all__ = ["DEFAULT_SINCE_S", "build_html"]

DEFAULT_SINCE_S = 86400.0
"""The window of a report without ``--since``: its charts need one (the tables follow it)."""


def build_html(db: str | os.PathLike[str], since_s: float | None = None, now_ns: int | None = None) -> str:
    """The report of the last ``since_s`` seconds (default a day) of the store ``db``.

    Raises as :func:`spanlytics.report.build_report` does."""
    since_s = DEFAULT_SINCE_S if since_s is None else since_s
    check_window(since_s, f"{since_s!r} s")
    now = time.time_ns() if now_ns is None else now_ns
    window = Window(now - round(since_s * 1e9), now, None)
    text = os.fspath(db)
    source = redact_url(text) if is_postgres_url(text) else os.path.expanduser(text)
    with open_reader(text if is_postgres_url(text) else os.path.expanduser(text)) as reader:
        data = overview(reader, window, top=None)
    css = Markup((STATIC / "dashboard.css").read_text(encoding="utf-8"))  # ours, not the store's
    return render("report.html", window=window, data=data, css=css, source=source, now=now)
