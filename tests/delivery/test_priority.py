"""``delivery/priority.py``: how a delivering process gives way to the requests, each case in a process of its own
(a lowered priority cannot be raised again without privileges)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import os, sys
from flask_otp_conversion.delivery.priority import give_way
if sys.argv[3] == "refused":  # what a container's seccomp filter does to the call
    def refuse(*args):
        raise PermissionError(1, "Operation not permitted")
    os.sched_setscheduler = refuse
print(give_way(nice=int(sys.argv[1]), idle=sys.argv[2] == "idle"))
print(os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0))
"""


def give_way_in_a_child(nice: int, idle: bool, *, refused: bool = False) -> tuple[str, int, int]:
    """What ``give_way`` said, and the child's scheduling policy and niceness after it."""
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(nice), "idle" if idle else "-", "refused" if refused else "-"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.splitlines()
    policy, nice_after = out[1].split()
    return out[0], int(policy), int(nice_after)


MINE = os.getpriority(os.PRIO_PROCESS, 0)


def test_idle_puts_the_process_under_sched_idle() -> None:
    said, policy, nice = give_way_in_a_child(10, idle=True)
    assert (said, policy, nice) == ("SCHED_IDLE", os.SCHED_IDLE, MINE)


@pytest.mark.parametrize("nice", [1, 10, 19])
def test_without_idle_the_process_is_niced(nice: int) -> None:
    said, policy, after = give_way_in_a_child(nice, idle=False)
    assert (said, policy, after) == (f"nice {nice}", os.SCHED_OTHER, min(19, MINE + nice))


def test_neither_leaves_the_process_as_it_was() -> None:
    assert give_way_in_a_child(0, idle=False) == ("normal priority", os.SCHED_OTHER, MINE)


def test_where_sched_idle_is_refused_the_process_is_niced() -> None:
    assert give_way_in_a_child(10, idle=True, refused=True) == ("nice 10", os.SCHED_OTHER, min(19, MINE + 10))
