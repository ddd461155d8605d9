"""``python -m examples.fastapi_service`` runs the service with uvicorn."""

from .main import main

main()
