"""Process-wide state: the one mechanism that resets it, in a forked child and on request.

Two kinds of state register here:

* objects that own threads, locks, queues or connections (the pipeline, senders, stores)
  call :func:`reset_in_child`, so a forked worker (gunicorn ``--preload``) starts them
  clean. Only a weak reference is held: registering keeps nothing alive.
* module-level state (the capture side channel, the process-wide capture options, the
  providers spanlytics attached to) calls :func:`on_reset`; :func:`reset_process` runs
  those hooks, which ``spanlytics.shutdown()`` does after stopping everything, so that the
  next ``configure()`` starts from scratch. A hook registered with ``in_child=True`` also
  runs in a forked child.

There is exactly one ``os.register_at_fork`` call in spanlytics: the one below.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_owners: list[tuple[weakref.ref[Any], Callable[[Any], None]]] = []
_child_hooks: list[Callable[[], None]] = []
_reset_hooks: list[Callable[[], None]] = []


def reset_in_child(owner: T, reset: Callable[[T], None]) -> None:
    """Call ``reset(owner)`` in every forked child while ``owner`` is alive."""
    with _lock:
        _owners[:] = [(ref, fn) for ref, fn in _owners if ref() is not None]
        _owners.append((weakref.ref(owner), reset))


def on_reset(hook: Callable[[], None], *, in_child: bool = False) -> None:
    """Run ``hook`` at :func:`reset_process` (and, with ``in_child``, in a forked child)."""
    with _lock:
        _reset_hooks.append(hook)
        if in_child:
            _child_hooks.append(hook)


def reset_process() -> None:
    """Forget all module-level state: captures, options, deferred set-up, attachments."""
    with _lock:
        hooks = list(_reset_hooks)
    for hook in hooks:
        hook()


def _after_fork_in_child() -> None:
    # The child has one thread: the lock may have been held by another thread at fork.
    global _lock
    _lock = threading.Lock()
    for hook in list(_child_hooks):
        hook()
    for ref, reset in list(_owners):
        owner = ref()
        if owner is not None:
            reset(owner)


os.register_at_fork(after_in_child=_after_fork_in_child)
