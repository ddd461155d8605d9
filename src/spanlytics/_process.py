"""Process-wide state: the one mechanism that resets it, in a forked child and on request.

Two kinds of state register here:

* objects that own threads, locks, queues or connections (the pipeline, senders, stores)
  call :func:`reset_in_child`, so a forked worker (gunicorn ``--preload``) starts them
  clean. Only a weak reference is held: registering keeps nothing alive.
* module-level state (the capture side channel, the process-wide capture options, the
  providers spanlytics attached to, the registries of pipelines and senders) calls
  :func:`on_reset`; :func:`reset_process` runs those hooks, which ``spanlytics.shutdown()``
  does after stopping everything, so that the next ``configure()`` starts from scratch. A
  hook registered with ``in_child=True`` also runs in a forked child::

      _seen: set[str] = set()
      on_reset(_seen.clear)                       # module-level state
      reset_in_child(self, Sender._reset)         # an object's threads, locks and queues

There is exactly one ``os.register_at_fork`` call in spanlytics: the one below.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class _Hooks:
    """What is registered; hooks run in the order they were registered."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.owners: list[tuple[weakref.ref[Any], Callable[[Any], None]]] = []
        self.child: list[Callable[[], None]] = []
        self.reset: list[Callable[[], None]] = []


_hooks = _Hooks()


def reset_in_child(owner: T, reset: Callable[[T], None]) -> None:
    """Call ``reset(owner)`` in every forked child while ``owner`` is alive."""
    with _hooks.lock:
        _hooks.owners[:] = [(ref, fn) for ref, fn in _hooks.owners if ref() is not None]
        _hooks.owners.append((weakref.ref(owner), reset))


def on_reset(hook: Callable[[], None], *, in_child: bool = False) -> None:
    """Run ``hook`` at :func:`reset_process` (and, with ``in_child``, in a forked child)."""
    with _hooks.lock:
        _hooks.reset.append(hook)
        if in_child:
            _hooks.child.append(hook)


def reset_process() -> None:
    """Forget all module-level state: captures, options, deferred set-up, attachments,
    the registries of pipelines, exporters and senders, warning throttles.

    It stops nothing: ``spanlytics.shutdown()`` and ``spanlytics.testing.reset()`` stop
    the pipelines first, then call this.
    """
    with _hooks.lock:
        hooks = list(_hooks.reset)
    for hook in hooks:
        hook()


def _after_fork_in_child() -> None:
    # The child has one thread: the lock may have been held by another thread at fork.
    _hooks.lock = threading.Lock()
    for hook in list(_hooks.child):
        hook()
    for ref, reset in list(_hooks.owners):
        owner = ref()
        if owner is not None:
            reset(owner)


os.register_at_fork(after_in_child=_after_fork_in_child)
