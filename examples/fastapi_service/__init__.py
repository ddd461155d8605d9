"""A small FastAPI microservice instrumented with spanlytics.

Run it from the repository root::

    uvicorn examples.fastapi_service.main:app --port 8000
"""
