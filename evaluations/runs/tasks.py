"""Celery tasks: each takes an id and calls one function. Services enqueue them; they import what
they call inside their bodies, so tasks and services never import each other in a cycle."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

# The sandbox enforces the wall limit itself; these only catch a sandbox layer that hangs.
_SOFT_LIMIT = int(settings.CRUCIBLE_MAX_WALL_SECONDS) + 60


@shared_task(name="evaluations.run_execute", soft_time_limit=_SOFT_LIMIT, time_limit=_SOFT_LIMIT + 30)
def execute_run(run_id: int) -> None:
    from evaluations.runs import execution

    execution.run_in_sandbox(run_id)
