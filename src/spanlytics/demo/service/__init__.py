"""The items service: the FastAPI microservice that ``spanlytics demo`` runs (and the FastAPI
example of ``examples/``): routers, dependency injection, Pydantic models, streaming.

    uvicorn spanlytics.demo.service.main:app --port 8000
"""
