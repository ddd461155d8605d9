"""Items: CRUD on the in-memory store plus a streaming NDJSON export.

The CRUD handlers are plain ``def`` functions (FastAPI runs them in its thread pool); the export
is an async generator streamed chunk by chunk.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from fastapi.responses import StreamingResponse

from spanlytics.demo.data import ItemRecord

from ..deps import CurrentConsumer, Store, get_current_consumer
from ..models import Item, ItemCreate

# Every route of this router requires an authenticated consumer.
router = APIRouter(prefix="/items", tags=["items"], dependencies=[Depends(get_current_consumer)])


def _get_or_404(store: Store, item_id: int) -> ItemRecord:
    item = store.get(item_id)
    if item is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="Item not found")
    return item


@router.get("", response_model=list[Item])
def list_items(
    store: Store,
    skip: Annotated[int, Query(ge=0, description="Number of items to skip")] = 0,
    limit: Annotated[int, Query(ge=1, le=100, description="Maximum number of items")] = 20,
) -> list[ItemRecord]:
    """List items, oldest first."""
    return store.list_items(skip=skip, limit=limit)


# Declared before "/{item_id}" so that "export" is not parsed as an item id.
@router.get("/export", response_class=StreamingResponse)
async def export_items(store: Store) -> StreamingResponse:
    """Stream all items as NDJSON, one item per line and per chunk."""
    items = store.list_items(limit=len(store))

    async def ndjson() -> AsyncIterator[bytes]:
        for item in items:
            yield (json.dumps(item) + "\n").encode()
            await asyncio.sleep(0)  # let other requests run between chunks

    return StreamingResponse(ndjson(), media_type="application/x-ndjson")


@router.get("/{item_id}", response_model=Item)
def read_item(item_id: int, store: Store) -> ItemRecord:
    """Get one item; 404 when it does not exist."""
    return _get_or_404(store, item_id)


@router.post("", response_model=Item, status_code=status.HTTP_201_CREATED)
def create_item(item: ItemCreate, store: Store, consumer: CurrentConsumer) -> ItemRecord:
    """Create an item; invalid bodies are rejected with 422 by FastAPI's validation."""
    return store.create(item.model_dump(), created_by=consumer["id"])


@router.put("/{item_id}", response_model=Item)
def replace_item(item_id: int, item: ItemCreate, store: Store) -> ItemRecord:
    """Replace an item's fields; 404 when it does not exist."""
    updated = store.replace(item_id, item.model_dump())
    if updated is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="Item not found")
    return updated


@router.delete("/{item_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_item(item_id: int, store: Store) -> Response:
    """Delete an item; 404 when it does not exist."""
    if not store.delete(item_id):
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="Item not found")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
