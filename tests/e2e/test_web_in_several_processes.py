"""`python -m crucible_site.web --processes N`: N daphnes accept on one port, so the web runs Python
on more than one core; a process that dies is replaced, and none outlives the group's parent."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time
import urllib.request

import pytest

from tests.support.sandboxes import descendants, proc_info
from tests.support.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def children(pid: int) -> list[int]:
    return [p.pid for p in descendants(pid) if p.ppid == pid]


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def alive(pid: int) -> bool:
    return (info := proc_info(pid)) is not None and info.state != "Z"


def idle(pids: list[int]) -> bool:
    before = [cpu_ticks(pid) for pid in pids]
    time.sleep(0.5)
    return [cpu_ticks(pid) for pid in pids] == before


def wait_until(predicate, what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"waited {seconds} s for: {what}"
        time.sleep(0.05)


def get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        response.read()
        return response.status


def test_requests_are_served_by_every_process_and_a_dead_one_is_replaced(stack_env, tmp_path) -> None:
    with Stack(stack_env, log_dir=tmp_path, workers=0, web_processes=2) as stack:
        parent = stack.web.pid
        first = children(parent)
        wait_until(lambda: idle(first), "both web processes to finish starting")
        before = {pid: cpu_ticks(pid) for pid in first}
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(get, [stack.url("/login/")] * 200))
        busy = [pid for pid in first if cpu_ticks(pid) - before[pid] >= 5]  # 50 ms: it served some
        os.kill(first[0], signal.SIGKILL)
        wait_until(lambda: len(children(parent)) == 2 and first[0] not in children(parent), "a new web process")
        after_kill = get(stack.url("/login/"))

    assert statuses == [200] * 200
    assert len(first) == 2 and sorted(busy) == sorted(first), (before, busy)
    assert after_kill == 200


def test_no_web_process_outlives_a_killed_parent(stack_env, tmp_path) -> None:
    with Stack(stack_env, log_dir=tmp_path, workers=0, web_processes=2) as stack:
        parent = stack.web.pid
        served_by = children(parent)
        os.kill(parent, signal.SIGKILL)
        wait_until(lambda: not any(alive(pid) for pid in served_by), "the web processes to end")
