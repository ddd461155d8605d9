"""Demo data shared by the example apps: API consumers, login users, tokens and an item store.

Everything here is in memory and intentionally simple. A real service would keep API keys
hashed in a database and use a proper token library (e.g. PyJWT); the shapes are the same.

The API keys below are public demo values. They look like real secrets on purpose, so that
spanlytics' masking of ``Authorization`` / ``X-API-Key`` headers and of ``password`` /
``access_token`` body fields has something to mask.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, TypedDict


class ConsumerInfo(TypedDict):
    """An API consumer as the apps pass it to ``spanlytics.set_consumer``."""

    id: str
    name: str
    group: str
    email: str


class ItemRecord(TypedDict):
    """An item as stored in :class:`ItemStore`."""

    id: int
    name: str
    description: str | None
    price: float
    tags: list[str]
    created_by: str


#: Demo API keys -> the consumer they belong to. Send one as ``X-API-Key: <key>`` or
#: ``Authorization: Bearer <key>``.
API_KEYS: dict[str, ConsumerInfo] = {
    "sk_demo_acme_4c7f2a91d3": {
        "id": "acme",
        "name": "Acme Corp",
        "group": "enterprise",
        "email": "api@acme.example",
    },
    "sk_demo_globex_8e1b5d07c2": {
        "id": "globex",
        "name": "Globex Corporation",
        "group": "pro",
        "email": "dev@globex.example",
    },
    "sk_demo_initech_3a9f6c2e71": {
        "id": "initech",
        "name": "Initech",
        "group": "free",
        "email": "peter@initech.example",
    },
    "sk_demo_umbrella_5d2e8b4f90": {
        "id": "umbrella",
        "name": "Umbrella Labs",
        "group": "partner",
        "email": "integrations@umbrella.example",
    },
}

#: Consumers by their (stable, non-secret) identifier.
CONSUMERS: dict[str, ConsumerInfo] = {info["id"]: info for info in API_KEYS.values()}

#: Users for ``POST /auth/login``: username -> (password, consumer id).
USERS: dict[str, tuple[str, str]] = {
    "alice": ("wonderland-42", "acme"),
    "bob": ("builder-2024", "globex"),
}

TOKEN_TTL_SECONDS = 3600
_TOKEN_PREFIX = "tok_"
# Tokens are signed, not stored, so they stay valid across gunicorn/uvicorn worker processes.
_TOKEN_SECRET = os.environ.get("DEMO_TOKEN_SECRET", "spanlytics-demo-signing-secret").encode()


def _sign(payload: str) -> str:
    return hmac.new(_TOKEN_SECRET, payload.encode(), hashlib.sha256).hexdigest()[:32]


def issue_token(consumer_id: str, ttl: int = TOKEN_TTL_SECONDS) -> str:
    """Return a signed, expiring bearer token for ``consumer_id``."""
    payload = f"{consumer_id}:{int(time.time()) + ttl}"
    encoded = base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")
    return f"{_TOKEN_PREFIX}{encoded}.{_sign(payload)}"


def _consumer_from_token(token: str) -> ConsumerInfo | None:
    if not token.startswith(_TOKEN_PREFIX) or "." not in token:
        return None
    encoded, _, signature = token[len(_TOKEN_PREFIX) :].partition(".")
    try:
        payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        consumer_id, _, expires = payload.rpartition(":")
        expires_at = int(expires)
    except ValueError:  # bad base64, bad UTF-8 or a non-numeric expiry
        return None
    if not hmac.compare_digest(signature, _sign(payload)) or expires_at < time.time():
        return None
    return CONSUMERS.get(consumer_id)


def authenticate_user(username: str, password: str) -> ConsumerInfo | None:
    """Check a username/password pair; return the user's consumer or ``None``."""
    password_and_consumer = USERS.get(username)
    if password_and_consumer is None:
        return None
    expected, consumer_id = password_and_consumer
    if not hmac.compare_digest(password.encode(), expected.encode()):
        return None
    return CONSUMERS[consumer_id]


def credential_from_headers(authorization: str | None, x_api_key: str | None) -> str | None:
    """Pick the credential from ``X-API-Key`` or ``Authorization: Bearer <credential>``."""
    if x_api_key and x_api_key.strip():
        return x_api_key.strip()
    if authorization:
        scheme, _, credential = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and credential.strip():
            return credential.strip()
    return None


def lookup_credential(credential: str) -> ConsumerInfo | None:
    """Resolve an API key or a token from :func:`issue_token` to its consumer."""
    for key, consumer in API_KEYS.items():
        if hmac.compare_digest(credential.encode(), key.encode()):
            return consumer
    return _consumer_from_token(credential)


SEED_ITEMS: tuple[dict[str, Any], ...] = (
    {
        "name": "Anvil",
        "description": "Drop-forged, 50 kg",
        "price": 129.0,
        "tags": ["tools"],
        "created_by": "acme",
    },
    {
        "name": "Rocket skates",
        "description": None,
        "price": 349.5,
        "tags": ["outdoor", "fast"],
        "created_by": "acme",
    },
    {
        "name": "Stapler",
        "description": "Red, Swingline",
        "price": 12.99,
        "tags": ["office"],
        "created_by": "initech",
    },
)


class ItemStore:
    """A thread-safe in-memory item store (a dict plus a lock).

    The lock is only held for dict operations and never across an ``await``, so the same store
    works for sync handlers (thread pool, gunicorn threads) and async handlers alike. Methods
    return copies, so callers can never mutate stored items.
    """

    def __init__(self, seed: Iterable[Mapping[str, Any]] = SEED_ITEMS) -> None:
        self._lock = threading.Lock()
        self._items: dict[int, ItemRecord] = {}
        self._next_id = 1
        for item in seed:
            self.create(item, created_by=str(item.get("created_by", "system")))

    @staticmethod
    def _record(item_id: int, data: Mapping[str, Any], created_by: str) -> ItemRecord:
        return {
            "id": item_id,
            "name": data["name"],
            "description": data.get("description"),
            "price": data["price"],
            "tags": list(data.get("tags") or []),
            "created_by": created_by,
        }

    @staticmethod
    def _copy(item: ItemRecord) -> ItemRecord:
        return {**item, "tags": list(item["tags"])}

    def list_items(self, skip: int = 0, limit: int = 100) -> list[ItemRecord]:
        """Items in id order, paginated."""
        with self._lock:
            items = sorted(self._items.values(), key=lambda item: item["id"])[skip : skip + limit]
            return [self._copy(item) for item in items]

    def get(self, item_id: int) -> ItemRecord | None:
        """One item, or ``None`` when it does not exist."""
        with self._lock:
            item = self._items.get(item_id)
            return None if item is None else self._copy(item)

    def create(self, data: Mapping[str, Any], created_by: str) -> ItemRecord:
        """Store a new item (``name``, ``price``, optional ``description`` and ``tags``)."""
        with self._lock:
            item = self._record(self._next_id, data, created_by)
            self._items[item["id"]] = item
            self._next_id += 1
            return self._copy(item)

    def replace(self, item_id: int, data: Mapping[str, Any]) -> ItemRecord | None:
        """Replace an item's fields; ``None`` when it does not exist."""
        with self._lock:
            current = self._items.get(item_id)
            if current is None:
                return None
            item = self._record(item_id, data, current["created_by"])
            self._items[item_id] = item
            return self._copy(item)

    def delete(self, item_id: int) -> bool:
        """Delete an item; ``False`` when it did not exist."""
        with self._lock:
            return self._items.pop(item_id, None) is not None

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
