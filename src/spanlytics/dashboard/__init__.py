"""The local dashboard: ``spanlytics dashboard`` serves views of a store (the local SQLite
file or PostgreSQL) in a browser, read-only, and ``spanlytics report --html`` writes the
overview as one self-contained file.

Modules: ``params`` (the window and filters a URL asks for), ``views`` (what each view
shows, from a reader), ``charts`` (server-rendered SVG), ``render`` (the templates, escaped),
``app`` (the Starlette app: routes, token, security headers), ``html_report`` (the file).
Needs the ``dashboard`` extra (Starlette, Jinja2, uvicorn); nothing here is imported by
``import spanlytics``.
"""
