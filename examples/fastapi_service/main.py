"""The items service (source: ``src/spanlytics/demo/service/``), under the examples' names.

uvicorn examples.fastapi_service.main:app --port 8000
"""

from spanlytics.demo.service.main import app, main

__all__ = ["app", "main"]

if __name__ == "__main__":
    main()
