"""The local destination's options: ``local_path`` (``SPANLYTICS_LOCAL_PATH``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from spanlytics._setting_fields import setting
from spanlytics.destinations.options import DestinationOptions

DEFAULT_PATH = "./spanlytics.db"


@dataclass(frozen=True)
class LocalOptions(DestinationOptions):
    """Where the SQLite file is; missing parent directories are created when it is opened."""

    name: ClassVar[str] = "local"

    path: str = setting(DEFAULT_PATH, str)
