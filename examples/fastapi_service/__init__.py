"""A small FastAPI microservice instrumented with spanlytics.

Its source is :mod:`spanlytics.demo.service` (``src/spanlytics/demo/service/``), shipped inside
the package so that ``spanlytics demo`` works from an install too. Run it from the repository
root::

    uvicorn examples.fastapi_service.main:app --port 8000
"""
