"""Stage 4: replace secrets in request records (a pure function that never raises).

* :mod:`~spanlytics.masking.rules`: the default rules as data, ``MaskingRules``, ``KEEP``;
* :mod:`~spanlytics.masking.core`: ``Masker``, which walks a record (headers, query, JSON
  and form bodies, exceptions, echoes of masked values);
* :mod:`~spanlytics.masking.json_scan`: the token scanner for JSON no parser accepts;
* :mod:`~spanlytics.masking.text`: the free-text heuristics.
"""

from spanlytics.masking.core import Masker
from spanlytics.masking.rules import (
    DEFAULT_FIELD_PATTERN,
    DEFAULT_HEADER_NAMES,
    DEFAULT_HEADER_PATTERN,
    EXCEPTION_MODES,
    FAILED,
    KEEP,
    MaskingCallback,
    MaskingRules,
)

__all__ = [
    "DEFAULT_FIELD_PATTERN",
    "DEFAULT_HEADER_NAMES",
    "DEFAULT_HEADER_PATTERN",
    "EXCEPTION_MODES",
    "FAILED",
    "KEEP",
    "Masker",
    "MaskingCallback",
    "MaskingRules",
]
