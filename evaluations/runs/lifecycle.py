"""A run's way from queued to its end, as workers and the reconciler move it (docs/lifecycle.md).

Every change is a conditional UPDATE whose row count decides what happens next, so a second
delivery, a late result or a reconciler racing a worker changes nothing twice. A run's sandbox is
started at most once: a run whose worker is lost ends as error/worker_lost, keeping its output.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import redis
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

import sandbox
from evaluations.accounts.quotas import owner_lock
from evaluations.live import groups, protocol, publisher
from evaluations.live.selectors import run_list_audience
from evaluations.models import TERMINAL_STATUSES, Profile, Run, RunReason, RunStatus, WorkerHeartbeat
from evaluations.runs import broker, logstore, scheduling, selectors
from evaluations.runs.tasks import execute_run
from evaluations.webhooks.services import webhook_schedule_on_commit, webhooks_schedule_on_commit

logger = logging.getLogger(__name__)

# How many waiting runs are told their new queue position when the queue moves, and how often at
# most, by all workers together: each telling cost 60 ms of CPU with 400 runs queued.
QUEUE_UPDATES = 50
QUEUE_TELL_EVERY_SECONDS = 1.0
# Runs claimed before leases existed count as lost this long past their wall limit.
LEGACY_LOST_GRACE_SECONDS = 120
# Times a worker chooses again when others claimed the run it chose first.
CLAIM_ATTEMPTS = 5


def transition(run_id: int, from_status: str, *, where: dict[str, Any] | None = None, **fields) -> bool:
    """The one way a run changes status: a conditional UPDATE (on `from_status` and `where`), whose
    change is published to the run's websocket group once committed."""
    changed = Run.objects.filter(pk=run_id, status=from_status, **(where or {})).update(**fields) == 1
    if changed:
        publish_status_on_commit(run_id)
        if fields.get("status") in TERMINAL_STATUSES:
            webhook_schedule_on_commit(run_id)
    return changed


def publish_status_on_commit(run_id: int, *, created: Run | None = None) -> None:
    """Once committed, send the run's status to its page and run lists. `created`: the instance the
    caller answers with, given the queue state sent, so that its answer need not look again."""

    def publish() -> None:
        run = Run.objects.select_related("submission").filter(pk=run_id).first()
        if run is not None:
            payload = selectors.run_status_payload(run=run)
            publisher.publish_status(
                run_id=run_id,
                owner_id=run.submission.owner_id,
                payload=payload,
                list_groups=run_list_audience(run=run),
            )
            if created is not None and run.status == created.status:
                created.queue_state = (payload["queue_position"], payload["waiting"])

    transaction.on_commit(publish)


def runs_cancel_queued(*, run_ids: list[int], detail: str) -> list[int]:
    """queued → cancelled for those of `run_ids` still queued, in one UPDATE under their row locks
    (a worker's claim waits, then finds them cancelled); the ids it cancelled. Their pages and run
    lists hear it in one send, and their webhooks are scheduled, once committed."""
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            Run.objects.select_for_update().filter(pk__in=run_ids, status=RunStatus.QUEUED).values_list("pk", flat=True)
        )
        Run.objects.filter(pk__in=ids).update(
            status=RunStatus.CANCELLED,
            reason=RunReason.CANCELLED,
            detail=detail,
            cancel_requested_at=now,
            finished_at=now,
        )
        if ids:
            transaction.on_commit(lambda: _publish_statuses(ids))
            webhooks_schedule_on_commit(ids)
    return ids


def _publish_statuses(run_ids: list[int]) -> None:
    """Each run's page its status, and each run list that shows them one (which refreshes the list)."""
    runs = list(Run.objects.select_related("submission").filter(pk__in=run_ids))
    messages = [
        (groups.run_group(run.pk), protocol.status_event(selectors.run_status_payload(run=run))) for run in runs
    ]
    if runs:
        first = runs[0]
        listed = protocol.status_event({"id": first.pk, **selectors.run_status_payload(run=first)})
        audience = [groups.user_group(first.submission.owner_id), *run_list_audience(run=first)]
        messages += [(group, listed) for group in audience]
    publisher.send(messages)


def queue_clock() -> float:
    """Now, by the clock queue_moved_tell compares times on: Redis's (broker.clock()), or this
    host's while Redis does not answer (queue_moved_tell then tells at once)."""
    try:
        return broker.clock()
    except redis.RedisError:
        return time.time()


def queue_moved_tell(*, moved_at: float, last_chance: bool = False) -> bool:
    """The queue moved before `moved_at` (a queue_clock()): tell its first runs their positions if it is
    the caller's turn. True once told, or covered by a telling since; False: ask again shortly. On
    the last chance a move not told is left to the reconciler's next pass."""
    try:
        turn = broker.queue_tell_turn(moved_at=moved_at, every=QUEUE_TELL_EVERY_SECONDS)
    except redis.RedisError:
        turn = True  # no turns to share: tell it now (the live messages need Redis too)
    if turn:
        publish_queue_positions()
        return True
    if turn is None:
        return True
    if last_chance:
        with contextlib.suppress(redis.RedisError):
            broker.queue_moved_mark()
        return True
    return False


def publish_queue_positions() -> None:
    """The queue moved (or workers came or went): tell the first waiting runs' pages their position
    and what they wait for, in one send (run lists do not show positions: their sockets are spared)."""
    queues = scheduling.owner_queues()
    waiting = scheduling.expected_order(limit=QUEUE_UPDATES, queues=queues)
    unavailable = selectors.workers_unavailable()
    at_quota = {} if unavailable else scheduling.quota_waits(queues=queues)
    publisher.send(
        [
            (
                groups.run_group(run.pk),
                protocol.status_event(
                    selectors.run_status_payload(
                        run=run, queue_position=i, waiting=unavailable or at_quota.get(run.submission.owner_id)
                    )
                ),
            )
            for i, run in enumerate(waiting)
        ]
    )


def run_send(*, run_id: int) -> bool:
    """Send the run's task message. False if the broker is unreachable: the reconciler sends it later."""
    task_id = broker.task_id_for(run_id, uuid.uuid4().hex[:12])
    try:
        execute_run.apply_async((run_id,), task_id=task_id)
    except Exception as exc:  # kombu raises its own OperationalError, redis its errors, or OSError
        logger.warning("run %s: could not send its task (%s); the reconciler sends it later", run_id, exc)
        return False
    logger.info("run %s sent to the queue as task %s", run_id, task_id, extra={"task_id": task_id})
    Run.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(sent_at=timezone.now())
    return True


def run_message_spent(*, run_id: int) -> None:
    """A delivery of the run's message started nothing (no queued run could start): if it is still
    queued it has no message now, and the next slot freed for its owner sends it one."""
    spent = Run.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(sent_at=None)
    # A slot freed since the claim looked saw this message still out, and sent none: look again.
    if spent and scheduling.next_claimable(prefer=run_id) is not None:
        run_send(run_id=run_id)


def run_send_on_commit(run_id: int) -> None:
    transaction.on_commit(lambda: run_send(run_id=run_id))


def _lease_end(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.CRUCIBLE_RUN_LEASE_SECONDS)


def run_claim(*, run_id: int, worker: str = "") -> bool:
    """queued → running, leased to `worker`. False if the run is not queued (claimed, ended or gone).
    The runs still queued are told their new positions by the claiming worker's watcher thread
    (execution._Watch), off the way to the sandbox's start."""
    now = timezone.now()
    claimed = transition(
        run_id,
        RunStatus.QUEUED,
        status=RunStatus.RUNNING,
        started_at=now,
        worker=worker[:200],
        lease_expires_at=_lease_end(now),
        deliveries=F("deliveries") + 1,
    )
    return claimed


def run_claim_next(*, worker: str = "", prefer: int | None = None) -> int | None:
    """Claim the run whose turn it is (scheduling.py), whichever run the message named; its id, or
    None if no queued run may start now. Claims of one user's runs take that user's lock, so two
    workers cannot start more of their runs at once than their concurrent-run quota.
    CRUCIBLE_SCHEDULER=fifo claims the message's own run instead (first in, first out)."""
    if settings.CRUCIBLE_SCHEDULER == "fifo":
        return prefer if prefer is not None and run_claim(run_id=prefer, worker=worker) else None
    for _ in range(CLAIM_ATTEMPTS):  # another worker may take the chosen run first: choose again
        choice = scheduling.next_claimable(prefer=prefer)
        if choice is None:
            return None
        queue, run_id = choice
        with transaction.atomic():
            owner_lock(queue.owner)
            running = Run.objects.filter(submission__owner_id=queue.owner_id, status=RunStatus.RUNNING).count()
            if queue.limit is not None and running >= queue.limit:
                continue
            if run_claim(run_id=run_id, worker=worker):
                Profile.objects.filter(user_id=queue.owner_id).update(last_run_started_at=timezone.now())
                return run_id
    return None


def runs_send_on_commit(run_ids: list[int]) -> None:
    for run_id in run_ids:
        run_send_on_commit(run_id)


def slot_freed_on_commit(run_id: int) -> None:
    """A run of a user with a concurrent-run quota ended: a message for their next waiting run
    (their batch's other runs were sent no message while they were at their quota)."""

    def send() -> None:
        # Their oldest run without a message: never sent, or its message spent on a delivery skipped
        # while they were at their quota (run_message_spent). A run whose message waits needs none.
        owner = Run.objects.filter(pk=run_id).values("submission__owner_id")
        next_id = (
            Run.objects.filter(submission__owner_id__in=owner, status=RunStatus.QUEUED, sent_at__isnull=True)
            .order_by("queued_at", "id")
            .values_list("pk", flat=True)
            .first()
        )
        if next_id is not None:
            run_send(run_id=next_id)

    transaction.on_commit(send)


def run_lease_renew(*, run_id: int, worker: str) -> bool:
    """The worker still runs it. False if the run is no longer running on `worker` (it was ended)."""
    return bool(
        Run.objects.filter(pk=run_id, status=RunStatus.RUNNING, worker=worker[:200]).update(
            lease_expires_at=_lease_end(timezone.now())
        )
    )


def run_cancel_requested(*, run_id: int) -> bool:
    return Run.objects.filter(pk=run_id, cancel_requested_at__isnull=False).exists()


def result_fields(result: sandbox.ExecResult) -> dict[str, Any]:
    """The columns a finished run gets from its result (JSON-friendly: they may go through Redis)."""
    return {
        "status": result.status.value,
        "reason": result.reason.value if result.reason else None,
        "detail": result.detail,
        "exit_code": result.exit_code,
        "finished_at": timezone.now().isoformat(),
        "cpu_seconds": result.usage.cpu_seconds,
        "peak_memory_bytes": result.usage.peak_memory_bytes,
        "peak_processes": result.usage.peak_processes,
        "stdout_bytes": result.stdout.bytes_written,
        "stderr_bytes": result.stderr.bytes_written,
        "stdout_truncated": result.stdout.truncated,
        "stderr_truncated": result.stderr.truncated,
        "engine": result.engine,
        "runtime_version": result.runtime_version[:200],
        "image_digest": result.image_digest,
    }


def sandbox_start_seconds(*, claimed: float, returned: float, result: sandbox.ExecResult) -> float | None:
    """From the claim to the sandbox having booted, or None if it never booted (or the engine does not
    say). `claimed` and `returned` (from execute()) are time.monotonic() values; the sandbox booted
    boot_seconds after its process started, that being run_seconds + teardown_seconds before execute()
    returned."""
    timings = result.timings
    if timings.boot_seconds is None:
        return None
    booted = returned - timings.teardown_seconds - timings.run_seconds + timings.boot_seconds
    return max(0.0, booted - claimed)


def error_fields(*, reason: str, detail: str) -> dict[str, Any]:
    """Our fault (infrastructure): the run ends as `error` with a reason the user can read."""
    return {"status": RunStatus.ERROR, "reason": reason, "detail": detail, "finished_at": timezone.now().isoformat()}


def run_end(*, run_id: int, fields: dict[str, Any]) -> bool:
    """running → the terminal status in `fields` (result_fields or error_fields). Only a running
    run can end, so a result that arrives after the run was ended changes nothing."""
    values = dict(fields)
    values["finished_at"] = datetime.fromisoformat(values["finished_at"])
    ended = transition(run_id, RunStatus.RUNNING, lease_expires_at=None, **values)
    if ended:
        slot_freed_on_commit(run_id)
    return ended


def run_finish(*, run_id: int, result: sandbox.ExecResult) -> bool:
    return run_end(run_id=run_id, fields=result_fields(result))


def run_fail(*, run_id: int, reason: str, detail: str) -> bool:
    return run_end(run_id=run_id, fields=error_fields(reason=reason, detail=detail))


def runs_lost(*, now: datetime) -> list[Run]:
    """Running runs whose worker stopped renewing their lease (or, claimed before leases existed,
    are well past their wall limit)."""
    expired = list(Run.objects.filter(status=RunStatus.RUNNING, lease_expires_at__lt=now))
    legacy = Run.objects.filter(
        status=RunStatus.RUNNING,
        lease_expires_at__isnull=True,
        started_at__lt=now - timedelta(seconds=LEGACY_LOST_GRACE_SECONDS),
    )
    overdue = [
        run for run in legacy if run.started_at + timedelta(seconds=run.wall_seconds + LEGACY_LOST_GRACE_SECONDS) < now
    ]
    return expired + overdue


def run_end_lost(*, run: Run, now: datetime) -> bool:
    """End a run whose worker was lost, keeping what it printed; never run it again: its code may
    be what took the worker down. False if the worker renewed the lease or ended it meanwhile."""
    ran = (now - run.started_at).total_seconds() if run.started_at else 0.0
    who = f" ({run.worker})" if run.worker else ""
    detail = (
        f"its worker{who} stopped answering after {ran:.0f} s of this run (killed, crashed or cut off); "
        "the output printed until then is kept. It was not started again, since its code may be what "
        "took the worker down: re-run it if you think it was not."
    )
    sizes = {f"{s}_bytes": logstore.log_size(run, s) for s in logstore.STREAMS}
    where = {"lease_expires_at": run.lease_expires_at, "started_at": run.started_at}
    ended = transition(
        run.pk,
        RunStatus.RUNNING,
        where=where,
        status=RunStatus.ERROR,
        reason=RunReason.WORKER_LOST,
        detail=detail,
        finished_at=now,
        lease_expires_at=None,
        **sizes,
    )
    if ended:
        slot_freed_on_commit(run.pk)
    return ended


def worker_heartbeat(
    *,
    hostname: str,
    started,
    concurrency: int,
    now=None,
    kind: str = WorkerHeartbeat.Kind.WORKER,
    problem: str = "",
) -> None:
    """A worker or the reconciler says it is alive (or, with `problem`, why it takes no runs)."""
    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname[:200],
        defaults={
            "kind": kind,
            "started": started,
            "last_seen": now or timezone.now(),
            "concurrency": concurrency,
            "problem": problem[:500],
        },
    )


def worker_stopped(*, hostname: str) -> None:
    """A worker stopped cleanly: it takes no more runs (queued runs' pages say so if none is left)."""
    WorkerHeartbeat.objects.filter(hostname=hostname[:200]).update(problem="stopped", last_seen=timezone.now())
