"""Dependencies: API-consumer authentication (and spanlytics identification) and the item store."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

import spanlytics
from spanlytics.demo.data import ConsumerInfo, ItemStore, lookup_credential

# auto_error=False: we answer 401 ourselves, with one message for both ways of authenticating.
bearer_scheme = HTTPBearer(auto_error=False, description="A demo API key or a token from /auth/login")
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, description="A demo API key")


async def get_current_consumer(
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
    api_key: Annotated[str | None, Security(api_key_scheme)],
) -> ConsumerInfo:
    """Authenticate the caller by ``X-API-Key`` or ``Authorization: Bearer`` and identify it.

    ``spanlytics.set_consumer`` attributes this request to the consumer in the analytics. It is
    called from a dependency, which FastAPI runs inside the request's server span, and it never
    raises. FastAPI caches the dependency per request, so it runs once even when a route and its
    router both depend on it.
    """
    credential = api_key or (bearer.credentials if bearer else None)
    if not credential:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="Not authenticated",
            headers={"WWW-Authenticate": "Bearer"},
        )
    consumer = lookup_credential(credential.strip())
    if consumer is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="Invalid API key or token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    spanlytics.set_consumer(
        consumer["id"], name=consumer["name"], group=consumer["group"], email=consumer["email"]
    )
    return consumer


CurrentConsumer = Annotated[ConsumerInfo, Depends(get_current_consumer)]

_item_store = ItemStore()


def get_item_store() -> ItemStore:
    """The item store; override it in tests with ``app.dependency_overrides``."""
    return _item_store


Store = Annotated[ItemStore, Depends(get_item_store)]
