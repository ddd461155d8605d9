"""A small FastAPI app for the load test: spanlytics set up from SPANLYTICS_* variables."""

from __future__ import annotations

from fastapi import FastAPI

import spanlytics

app = FastAPI()


@app.get("/ready")
async def ready() -> dict[str, bool]:
    return {"ready": True}


@app.get("/orders/{order_id}")
async def order(order_id: int) -> dict[str, object]:
    spanlytics.set_consumer(f"customer-{order_id % 7}", name=f"Customer {order_id % 7}", group="load")
    return {"id": order_id, "status": "shipped", "items": [{"sku": "A-1", "quantity": 2}]}


spanlytics.configure()
spanlytics.instrument_app(app)
