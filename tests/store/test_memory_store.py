"""What only the memory store has: one process's dicts under one lock, started over in a forked child."""

from __future__ import annotations

import os
import threading

import pytest
from store_helpers import CN, HOUR0, send

from flask_otp_conversion.store import MemoryStore


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.timeout(30)
def test_a_forked_child_can_use_the_store_while_a_parent_thread_held_its_lock() -> None:
    store = MemoryStore()
    send(store, CN, "before-fork", HOUR0)
    holding, done = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with store._lock:
            holding.set()
            done.wait()

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    holding.wait()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 3
        try:
            known = not send(store, CN, "before-fork", HOUR0)  # the child's copy has the parent's data
            code = 0 if known and send(store, CN, "in-child", HOUR0) else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    done.set()
    holder.join()
    assert os.waitstatus_to_exitcode(status) == 0
    assert send(store, CN, "in-child", HOUR0)  # the child's copy diverged; the parent's never saw it


def test_the_repr_names_the_store() -> None:
    assert repr(MemoryStore()) == "MemoryStore()"
