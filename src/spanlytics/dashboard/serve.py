"""Where the dashboard may listen: loopback without a token, anywhere else only with one."""

from __future__ import annotations

import ipaddress

__all__ = ["bind_problem", "dashboard_url", "is_loopback"]

MIN_TOKEN = 16


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def bind_problem(host: str, token: str | None) -> str | None:
    """Why the dashboard must not listen on ``host`` with ``token``, None when it may."""
    if token is not None and len(token) < MIN_TOKEN:
        return f"the token is too short: at least {MIN_TOKEN} characters (e.g. from: openssl rand -hex 16)"
    if token is None and not is_loopback(host):
        return (
            f"refusing to listen on {host} without a token: anyone who reaches it would read the "
            "requests in the store; give --token or set SPANLYTICS_DASHBOARD_TOKEN (or bind 127.0.0.1)"
        )
    return None


def dashboard_url(host: str, port: int, token: str | None) -> str:
    """The URL to open (with the token, which the dashboard swaps for a cookie)."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    if shown in ("0.0.0.0", "[::]"):
        shown = "127.0.0.1"
    return f"http://{shown}:{port}/" + ("?token=<your token>" if token else "")
