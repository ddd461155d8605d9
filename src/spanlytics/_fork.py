"""Fork safety: objects that own threads, locks or connections start clean in a child."""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def reset_in_child(owner: T, reset: Callable[[T], None]) -> None:
    """Call ``reset(owner)`` in every forked child (gunicorn --preload) while it is alive.

    Holds only a weak reference, so registering does not keep ``owner`` alive.
    """
    ref = weakref.ref(owner)

    def after_fork() -> None:
        alive = ref()
        if alive is not None:
            reset(alive)

    os.register_at_fork(after_in_child=after_fork)
