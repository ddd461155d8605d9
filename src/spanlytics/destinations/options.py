"""A destination's options: its own settings, as the core settings are, with its name as prefix.

Field ``api_key`` of the ``readme`` options is the keyword ``readme_api_key`` of
:func:`spanlytics.configure` and the variable ``SPANLYTICS_README_API_KEY``; the field's
:func:`~spanlytics._setting_fields.setting` says its default and how its variable is parsed::

    @dataclass(frozen=True)
    class HttpOptions(DestinationOptions):
        name: ClassVar[str] = "http"
        required: ClassVar[str | None] = "url"  # without it the destination is not used
        url: str | None = setting(None, parse_optional_str)

The registry resolves every registered destination's options when the settings are resolved
(an invalid variable warns and keeps the default, an invalid keyword raises ``ValueError``);
the destination's factory reads them back with ``HttpOptions.of(settings)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar

from spanlytics._setting_fields import bounds_problems, raise_problems, resolve_fields

if TYPE_CHECKING:
    from typing_extensions import Self

    from spanlytics.config import Settings

__all__ = ["DestinationOptions"]


@dataclass(frozen=True)
class DestinationOptions:
    """Base of each destination's options class (a frozen dataclass of ``setting`` fields)."""

    name: ClassVar[str]
    """The destination's name (``SPANLYTICS_DESTINATIONS``), the prefix of its keywords."""
    required: ClassVar[str | tuple[str, ...] | None] = None
    """The field without which the destination is not used (a warning names its variable);
    a tuple: the fields of which it needs one (apitally: a write token or a client id)."""

    def problems(self) -> dict[str, str | None]:
        """Why each field is invalid (None: it is not); subclasses add their own checks."""
        return bounds_problems(self)

    def __post_init__(self) -> None:
        """Values given in code are checked at start-up (environment values were already)."""
        raise_problems(self.problems(), f"{self.name}_")

    @classmethod
    def keywords(cls) -> frozenset[str]:
        return frozenset(f"{cls.name}_{f.name}" for f in fields(cls))

    @classmethod
    def resolve(cls, environ: Mapping[str, str], given: Mapping[str, Any]) -> Self:
        """Keywords (``given``, prefixed) win over the ``SPANLYTICS_*`` variables, then the defaults."""
        return cls(**resolve_fields(cls, environ, given, f"{cls.name}_"))

    @classmethod
    def of(cls, settings: Settings) -> Self:
        """This destination's options in ``settings`` (the defaults when ``settings`` was built
        before the destination was registered)."""
        found = settings.destination_options.get(cls.name)
        return found if isinstance(found, cls) else cls()
