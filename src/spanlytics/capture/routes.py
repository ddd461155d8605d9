"""Compatibility alias of :mod:`spanlytics.app_routes` until destinations/apitally.py and
otel/auto.py import it. Delete at the merge."""

from spanlytics.app_routes import AppInfo, app_routes, apps_info, register_app, version

__all__ = ["AppInfo", "app_routes", "apps_info", "register_app", "version"]
