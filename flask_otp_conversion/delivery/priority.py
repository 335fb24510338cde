"""How a delivering process gives way to the web workers on its host: the CPU goes to the requests first.

Linux's ``SCHED_IDLE`` policy does it best. A request thread that wakes takes the core from an idle-policy process
at once, while a niced process first runs out its time slice, and a verify's p99 waits for that
(``benchmarks/steady.py``). An idle-policy process still gets a small share of a saturated CPU. A host saturated by
requests keeps the backlog in the spools and the outbox; it goes out when the load falls. Where ``SCHED_IDLE`` is
missing or refused (another OS, a container's seccomp filter), or not wanted, the process is niced instead.
"""

from __future__ import annotations

import os


def give_way(*, nice: int, idle: bool) -> str:
    """Lower this process's CPU priority; call it before starting threads, which inherit it. Returns what was
    done, for the log."""
    if idle and hasattr(os, "sched_setscheduler"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError:
            pass
        else:
            return "SCHED_IDLE"
    if nice:
        os.nice(nice)
        return f"nice {nice}"
    return "normal priority"
