"""What the reconciler and the ops page read from Redis directly: the runs queue as kombu keeps it,
results a worker could not store and handed over instead, and whose turn it is to tell the queue
its positions (docs/lifecycle.md)."""

from __future__ import annotations

import json
import os
from typing import Any

import redis
from django.conf import settings

# A run's task id starts with this and the run's id; the reconciler reads it back from the queue.
TASK_ID_PREFIX = "run-"
RESULTS_KEY = "crucible:handed-over-results"
# When queue positions were last told (by clock(), expiring when the next telling is due), and
# whether the queue moved since without a telling.
QUEUE_TOLD_KEY = "crucible:queue-told"
QUEUE_MOVED_KEY = "crucible:queue-moved"

_kept: tuple[int, redis.Redis] | None = None


def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2, socket_connect_timeout=2)


def _kept_client() -> redis.Redis:
    """One client per process for calls made on every run (a client of its own per call connects anew)."""
    global _kept
    if _kept is None or _kept[0] != os.getpid():
        _kept = (os.getpid(), _client())
    return _kept[1]


def clock() -> float:
    """Redis's time: one clock for the workers of every host, whose own clocks may disagree.
    Raises redis.RedisError."""
    seconds, micros = _kept_client().time()
    return seconds + micros / 1_000_000


def queue_tell_turn(*, moved_at: float, every: float) -> bool | None:
    """Whether the caller tells the queue its positions for a move at `moved_at` (by clock(), taken
    after the move): True if it is its turn (none told in the last `every` seconds: it is now told,
    by the caller), None if a telling that started after the move covers it, False if it should ask
    again shortly. Raises redis.RedisError."""
    client = _kept_client()
    now = clock()
    if client.set(QUEUE_TOLD_KEY, repr(now), nx=True, px=max(1, int(every * 1000))):
        client.delete(QUEUE_MOVED_KEY)
        return True
    told_at = client.get(QUEUE_TOLD_KEY)
    return None if told_at is not None and float(told_at) > moved_at else False


def queue_moved_mark() -> None:
    """Leave the telling of a move to the reconciler's next pass. Raises redis.RedisError."""
    _kept_client().set(QUEUE_MOVED_KEY, "1", ex=3600)


def queue_moved_take() -> bool:
    """Whether a move was left untold (and it is the caller's to tell now). Raises redis.RedisError."""
    return bool(_kept_client().getdel(QUEUE_MOVED_KEY))


def _queue_names() -> list[str]:
    # kombu's Redis transport keeps a queue as a list named after it, plus one list per priority step.
    from kombu.transport.redis import PRIORITY_STEPS, Channel

    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    return [queue if step == 0 else f"{queue}{Channel.sep}{step}" for step in PRIORITY_STEPS]


def task_id_for(run_id: int, nonce: str) -> str:
    return f"{TASK_ID_PREFIX}{run_id}-{nonce}"


def run_id_of(task_id: str) -> int | None:
    if not task_id.startswith(TASK_ID_PREFIX):
        return None
    number = task_id[len(TASK_ID_PREFIX) :].partition("-")[0]
    return int(number) if number.isdigit() else None


def queue_depth() -> int | None:
    """Messages waiting in the runs queue (not yet taken by a worker), or None if Redis does not answer."""
    client = _client()
    try:
        with client.pipeline(transaction=False) as pipe:
            for name in _queue_names():
                pipe.llen(name)
            return sum(pipe.execute())
    except redis.RedisError:
        return None
    finally:
        client.close()


def waiting_run_ids() -> set[int]:
    """Ids of the runs that have a message waiting in the queue. Raises redis.RedisError."""
    client = _client()
    try:
        with client.pipeline(transaction=False) as pipe:
            for name in _queue_names():
                pipe.lrange(name, 0, -1)
            lists = pipe.execute()
    finally:
        client.close()
    ids = set()
    for raw in (item for items in lists for item in items):
        try:
            task_id = json.loads(raw)["headers"]["id"]
        except (ValueError, KeyError, TypeError):
            continue  # not a task of ours
        run_id = run_id_of(str(task_id))
        if run_id is not None:
            ids.add(run_id)
    return ids


def result_hand_over(run_id: int, fields: dict[str, Any]) -> None:
    """Keep a run's final fields for the reconciler to store. Raises redis.RedisError."""
    client = _client()
    try:
        client.hset(RESULTS_KEY, str(run_id), json.dumps(fields))
    finally:
        client.close()


def results_handed_over() -> dict[int, dict[str, Any]]:
    """Results waiting to be stored, by run id. Raises redis.RedisError."""
    client = _client()
    try:
        raw = client.hgetall(RESULTS_KEY)
    finally:
        client.close()
    return {int(k): json.loads(v) for k, v in raw.items()}


def result_taken(run_id: int) -> None:
    client = _client()
    try:
        client.hdel(RESULTS_KEY, str(run_id))
    finally:
        client.close()
