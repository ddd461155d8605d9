"""The masking rules a process runs with: the code-given :class:`MaskingRules` extended by
the ``SPANLYTICS_MASK_*`` settings and the ReadMe SDKs' denylist/allowlist names.

>>> from spanlytics.config import Settings
>>> masking_rules(Settings.resolve(mask_fields=("^dob$",))).field_patterns
('^dob$',)
"""

from __future__ import annotations

import re
from dataclasses import replace

from spanlytics.config import Settings
from spanlytics.masking.rules import MaskingRules


def _patterns(value: str | tuple[str, ...]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)  # one string, one pattern


def masking_rules(settings: Settings, hidden_headers: tuple[str, ...] = ()) -> MaskingRules:
    """``settings.masking`` (or the defaults) plus the patterns the settings add.

    ``hidden_headers``: request headers whose raw value must not survive because it became
    a hashed consumer identifier (``consumer_hash``); they are masked by exact name.
    ``readme_denylist`` names are masked in any letter case at any depth; with a
    ``readme_allowlist``, every header and field not on it is masked. Both apply to every
    destination: masking happens once, before the records fan out.
    """
    rules = settings.masking or MaskingRules()
    hidden = tuple(f"^{re.escape(h)}$" for h in hidden_headers)
    deny = tuple(f"^{re.escape(name)}$" for name in settings.readme_denylist)
    everything = (".*",) if settings.readme_allowlist else ()
    return replace(
        rules,
        header_patterns=(
            *_patterns(rules.header_patterns),
            *settings.mask_headers,
            *hidden,
            *deny,
            *everything,
        ),
        field_patterns=(*_patterns(rules.field_patterns), *settings.mask_fields, *deny, *everything),
        allow=(*_patterns(rules.allow), *settings.mask_allow, *settings.readme_allowlist),
        exceptions=settings.mask_exceptions or rules.exceptions,
    )
