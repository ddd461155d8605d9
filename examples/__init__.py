"""Example applications instrumented with spanlytics.

* :mod:`examples.fastapi_service` - a FastAPI microservice (routers, dependency injection).
* :mod:`examples.flask_app` - the same API in Flask (blueprints, ``before_request`` auth).
* :mod:`examples.starlette_app` - the essentials in plain Starlette (authentication middleware).

All three share the demo consumers, credentials and item store in :mod:`examples.demo_data`.
See ``examples/README.md`` for how to run them.
"""
