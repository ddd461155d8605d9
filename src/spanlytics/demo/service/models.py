"""Pydantic models: request validation and response shapes of the items service."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr


class ItemBase(BaseModel):
    """Fields a client may set on an item."""

    name: str = Field(min_length=1, max_length=100, examples=["Anvil"])
    description: str | None = Field(default=None, max_length=500)
    price: float = Field(gt=0, le=1_000_000, examples=[129.0])
    tags: list[str] = Field(default_factory=list, max_length=10)


class ItemCreate(ItemBase):
    """Body of ``POST /items`` and ``PUT /items/{item_id}``."""


class Item(ItemBase):
    """An item as returned by the API."""

    id: int
    created_by: str = Field(description="Identifier of the consumer that created the item")


class LoginRequest(BaseModel):
    """Body of ``POST /auth/login``."""

    username: str = Field(min_length=1, max_length=64, examples=["alice"])
    password: SecretStr = Field(min_length=1, max_length=128, examples=["wonderland-42"])


class Token(BaseModel):
    """A bearer token, usable as ``Authorization: Bearer <access_token>``."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Lifetime in seconds")


class Consumer(BaseModel):
    """The API consumer that the request was identified as."""

    id: str
    name: str
    group: str
    email: str


class SlowReport(BaseModel):
    """Result of ``GET /reports/slow``."""

    requested_ms: int
    delay_ms: int = Field(description="The delay actually applied (capped)")


class Health(BaseModel):
    """Result of ``GET /healthz``."""

    status: Literal["ok"] = "ok"
    items: int
