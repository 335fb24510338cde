"""Objects whose state belongs to one process, rebuilt from scratch in a forked child.

A child of ``os.fork`` shares its parent's file descriptors and inherits its locks and ``Thread`` objects, but
none of its threads. Each such object remembers the pid that built its state and starts over once in a child:
from an at-fork hook, and from ``_check_fork()`` in its own entry points for forks that run no hooks (uWSGI's).
"""

from __future__ import annotations

import abc
import os
import weakref


class ForkLocal(abc.ABC):
    """Base of the reporter, the spool and the deliverer lock. A subclass sets ``_pid`` with the rest of its
    per-process state, then calls ``_watch_forks()`` once."""

    _pid: int

    def _watch_forks(self) -> None:
        _live.add(self)

    def _check_fork(self) -> bool:
        """In a forked child, start over (True); in the process that built the state, nothing (False)."""
        if self._pid == os.getpid():
            return False
        self._after_fork_in_child()
        return True

    @abc.abstractmethod
    def _after_fork_in_child(self) -> None:
        """Drop the parent's per-process state and build this process's (``_pid`` included). It may run in an
        at-fork hook: it must not take a lock a parent thread may have held at the fork, nor log."""


_live: weakref.WeakSet[ForkLocal] = weakref.WeakSet()


def _reset_in_child() -> None:
    for obj in list(_live):
        obj._check_fork()


os.register_at_fork(after_in_child=_reset_in_child)
