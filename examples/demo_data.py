"""The demo data the example apps share (source: ``src/spanlytics/demo/data.py``).

It lives in the package because ``spanlytics demo`` needs it wherever spanlytics is installed;
this module keeps the examples' import path, ``examples.demo_data``.
"""

from spanlytics.demo.data import (
    API_KEYS,
    CONSUMERS,
    SEED_ITEMS,
    TOKEN_TTL_SECONDS,
    USERS,
    ConsumerInfo,
    ItemRecord,
    ItemStore,
    authenticate_user,
    credential_from_headers,
    issue_token,
    lookup_credential,
)

__all__ = [
    "API_KEYS",
    "CONSUMERS",
    "SEED_ITEMS",
    "TOKEN_TTL_SECONDS",
    "USERS",
    "ConsumerInfo",
    "ItemRecord",
    "ItemStore",
    "authenticate_user",
    "credential_from_headers",
    "issue_token",
    "lookup_credential",
]
