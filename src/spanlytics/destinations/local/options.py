"""The local destination's options: ``local_path`` (``SPANLYTICS_LOCAL_PATH``) and
``local_max_mb`` (``SPANLYTICS_LOCAL_MAX_MB``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from spanlytics._setting_fields import setting
from spanlytics.destinations.options import DestinationOptions

DEFAULT_PATH = "./spanlytics.db"


@dataclass(frozen=True)
class LocalOptions(DestinationOptions):
    """Where the SQLite file is (missing parent directories are created when it is opened),
    and the size its records may use before the oldest go (MB of 2**20 bytes)."""

    name: ClassVar[str] = "local"

    path: str = setting(DEFAULT_PATH, str)
    max_mb: int = setting(1024, bounds=(1, 10_000_000))
