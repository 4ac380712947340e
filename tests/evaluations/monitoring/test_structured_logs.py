"""Structured logs (evaluations/monitoring/logging.py): JSON lines with the run, user and request or
task they are about, in this process and in a real stack (daphne, a Celery worker, the reconciler)
whose log files must be JSON throughout and must never contain a run's code, stdin or output."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta

import pytest
import requests

from evaluations.monitoring.logging import (
    ContextFilter,
    JsonFormatter,
    TextFormatter,
    connect_worker_signals,
    in_log_context,
    log_bind,
    log_context,
)
from tests.e2e.conftest import e2e_user, stack_env, wait_for_run  # noqa: F401 - fixtures for the stack test
from tests.support.stack import REPO_ROOT, Stack


class JsonLines:
    """What the root logger wrote, as the production handler writes it (context filter + JSON)."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.addFilter(ContextFilter())
        self.handler.setFormatter(JsonFormatter())

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]

    def about(self, run_id: int) -> list[dict]:
        return [line for line in self.lines() if line.get("run_id") == run_id]


@pytest.fixture
def json_lines():
    captured = JsonLines()
    root = logging.getLogger()
    root.addHandler(captured.handler)
    yield captured
    root.removeHandler(captured.handler)


def record(message: str = "hello %s", *args, name: str = "crucible.test", **attrs) -> logging.LogRecord:
    rec = logging.LogRecord(name, logging.WARNING, __file__, 1, message, args or ("world",), None)
    for key, value in attrs.items():
        setattr(rec, key, value)
    return rec


def formatted(rec: logging.LogRecord) -> dict:
    ContextFilter().filter(rec)
    text = JsonFormatter().format(rec)
    assert "\n" not in text
    return json.loads(text)


# -- the formatters and the context ----------------------------------------------------------------------


def test_a_json_line_has_the_time_in_utc_level_logger_message_and_context():
    with log_context(run_id=42, user="alice", request_id="req-1"):
        line = formatted(record("two\nlines %s", "here"))

    assert line["message"] == "two\nlines here"
    assert (line["level"], line["logger"]) == ("WARNING", "crucible.test")
    assert (line["run_id"], line["user"], line["request_id"]) == (42, "alice", "req-1")
    assert "task_id" not in line  # unknown fields are left out, not null
    moment = datetime.fromisoformat(line["time"])
    assert line["time"].endswith("Z") and moment.utcoffset() == timedelta(0)
    assert abs(time.time() - moment.timestamp()) < 60


def test_a_json_line_carries_plain_extras_and_the_traceback_but_no_objects():
    try:
        raise ValueError("boom")
    except ValueError:
        exc_info = sys.exc_info()
    rec = record(status_code=404, request=object(), data={"args": "(1,)"}, duration_ms=1.5)
    rec.exc_info = exc_info

    line = formatted(rec)

    assert (line["status_code"], line["duration_ms"]) == (404, 1.5)
    assert "request" not in line and "data" not in line
    assert "ValueError: boom" in line["exception"] and "Traceback" in line["exception"]


def test_an_extra_field_wins_over_the_scope():
    with log_context(run_id=1, task_id="outer"):
        line = formatted(record(task_id="run-1-abc"))

    assert (line["run_id"], line["task_id"]) == (1, "run-1-abc")


def test_a_scope_adds_to_the_enclosing_one_and_ends_with_it():
    with log_context(request_id="r"):
        with log_context(run_id=7):
            inner = formatted(record())
        after = formatted(record())
    outside = formatted(record())

    assert (inner["request_id"], inner["run_id"]) == ("r", 7)
    assert "run_id" not in after and after["request_id"] == "r"
    assert "request_id" not in outside


def test_a_bind_lasts_for_the_rest_of_its_scope_and_does_nothing_outside_one():
    log_bind(run_id=99)
    assert "run_id" not in formatted(record())

    with log_context(task_id="t"):
        with log_context():
            log_bind(run_id=5)
            assert formatted(record())["run_id"] == 5
        assert "run_id" not in formatted(record())  # bound in the inner scope only


def test_a_thread_started_in_the_scope_logs_with_it():
    lines = []
    with log_context(run_id=3, user="bob"):
        thread = threading.Thread(target=in_log_context(lambda: lines.append(formatted(record()))))
    thread.start()
    thread.join()

    assert (lines[0]["run_id"], lines[0]["user"]) == (3, "bob")


def test_a_text_line_names_its_context_after_the_message():
    with log_context(run_id=8, user="carol"):
        rec = record()
        ContextFilter().filter(rec)
        text = TextFormatter().format(rec)

    assert text.endswith("WARNING crucible.test hello world [run_id=8 user=carol]")


def test_the_log_format_defaults_to_json_in_production_and_text_otherwise():
    def log_format(**env) -> subprocess.CompletedProcess:
        code = "from django.conf import settings; print(settings.CRUCIBLE_LOG_FORMAT)"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("CRUCIBLE_LOG_FORMAT")}
        environ.update(DJANGO_SETTINGS_MODULE="crucible_site.test_settings", **env)
        return subprocess.run(
            [sys.executable, "-c", code], env=environ, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
        )

    production = {"CRUCIBLE_PRODUCTION": "1", "CRUCIBLE_SECRET_KEY": "k" * 50, "CRUCIBLE_SANDBOX_ENGINE": "runsc"}
    assert log_format(**production).stdout.strip() == "json"
    assert log_format(CRUCIBLE_PRODUCTION="0").stdout.strip() == "text"
    assert log_format(**production, CRUCIBLE_LOG_FORMAT="text").stdout.strip() == "text"
    wrong = log_format(CRUCIBLE_LOG_FORMAT="xml")
    assert wrong.returncode != 0 and "CRUCIBLE_LOG_FORMAT must be json or text" in wrong.stderr


def test_a_python_warning_is_a_json_line_too():
    code = "import django, warnings; django.setup(); warnings.warn('careful')"
    environ = {**os.environ, "DJANGO_SETTINGS_MODULE": "crucible_site.test_settings", "CRUCIBLE_LOG_FORMAT": "json"}

    done = subprocess.run([sys.executable, "-c", code], env=environ, cwd=REPO_ROOT, capture_output=True, text=True)

    [line] = [json.loads(raw) for raw in done.stderr.splitlines()]
    assert (line["logger"], line["level"]) == ("py.warnings", "WARNING") and "careful" in line["message"]


# -- requests, tasks and the reconciler --------------------------------------------------------------------


@pytest.mark.parametrize("sent", ["req-42", "0f8fad5b-d9cb-469f-a165-70867728950e", "edge.proxy:1_2"])
def test_a_sane_request_id_comes_back_and_tags_the_requests_lines(api_client, user, make_run, json_lines, sent):
    run = make_run(user)

    resp = api_client.get(f"/api/v1/runs/{run.pk}/", HTTP_X_REQUEST_ID=sent)

    assert resp.status_code == 200
    assert resp["X-Request-ID"] == sent
    [access] = [line for line in json_lines.lines() if line["logger"] == "crucible.request"]
    assert (access["request_id"], access["run_id"], access["user"]) == (sent, run.pk, user.username)
    assert (access["method"], access["path"], access["status"]) == ("GET", f"/api/v1/runs/{run.pk}/", 200)


@pytest.mark.parametrize("sent", [None, "", "a b", "x" * 129, "<script>", "-leading-dash", "ünïcode"])
def test_a_missing_or_odd_request_id_is_replaced_by_a_new_one(anonymous_client, json_lines, sent):
    headers = {} if sent is None else {"HTTP_X_REQUEST_ID": sent}

    resp = anonymous_client.get("/login/", **headers)

    new = resp["X-Request-ID"]
    assert new != sent and len(new) == 32 and int(new, 16) >= 0
    assert [line["request_id"] for line in json_lines.lines() if line["logger"] == "crucible.request"] == [new]


def test_two_requests_get_two_ids(anonymous_client):
    assert anonymous_client.get("/login/")["X-Request-ID"] != anonymous_client.get("/login/")["X-Request-ID"]


def test_a_submission_logs_the_new_run_with_its_request_and_user(api_client, user, json_lines, no_worker):
    resp = api_client.post("/api/v1/submissions/", {"code": "print(1)\n"}, format="json", HTTP_X_REQUEST_ID="submit-1")

    assert resp.status_code == 201, resp.content
    lines = json_lines.about(resp.json()["id"])
    assert {line["logger"] for line in lines} >= {"crucible.audit", "crucible.request"}
    assert all((line["request_id"], line["user"]) == ("submit-1", user.username) for line in lines)


def test_a_runs_task_lines_carry_its_task_id_run_id_and_owner(user, make_run, json_lines):
    from celery import signals

    from evaluations.runs import execution

    connect_worker_signals()
    run = make_run(user, status="succeeded")  # not queued: the delivery is skipped, and says so
    task_id = f"run-{run.pk}-abc"

    signals.task_prerun.send(sender=None, task_id=task_id, task=None, args=(run.pk,), kwargs={})
    try:
        assert execution.run_in_sandbox(run.pk) is False
        logging.getLogger("celery.app.trace").info("Task %(name)s[%(id)s] succeeded", {"id": task_id, "name": "x"})
    finally:
        signals.task_postrun.send(sender=None, task_id=task_id, task=None, args=(run.pk,), kwargs={})
    logging.getLogger("crucible.test").warning("after the task")

    lines = json_lines.lines()
    assert [line["message"] for line in json_lines.about(run.pk)] == [
        f"run {run.pk}: no queued run may start now; skipping this delivery",
        f"Task x[{task_id}] succeeded",
    ]
    assert all((line["task_id"], line["user"]) == (task_id, user.username) for line in json_lines.about(run.pk))
    assert "task_id" not in lines[-1] and "run_id" not in lines[-1]


def test_celerys_own_lines_in_the_workers_main_process_name_the_task_and_its_run():
    rec = record("Task %(name)s[%(id)s] received", name="celery.worker.strategy")
    rec.args = {"id": "run-12-abcdef", "name": "evaluations.run_execute"}

    line = formatted(rec)

    assert (line["task_id"], line["run_id"]) == ("run-12-abcdef", 12)


def test_the_reconcilers_decision_lines_carry_the_run_its_owner_and_the_pass(user, make_run, json_lines):
    from django.utils import timezone

    from evaluations.runs import reconciler

    past = timezone.now() - timedelta(seconds=60)
    run = make_run(user, status="running", started_at=past, worker="gone pid 1", lease_expires_at=past)

    reconciler.reconcile()

    lines = json_lines.about(run.pk)
    assert {line["logger"] for line in lines} >= {"evaluations.runs.reconciler", "crucible.audit"}
    assert all(line["user"] == user.username and line["task_id"].startswith("reconcile-") for line in lines)


# -- a real stack ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def json_stack(stack_env, tmp_path_factory):  # noqa: F811 - stack_env is the e2e fixture imported above
    """daphne + a Celery worker + the reconciler, logging JSON as in production."""
    import redis

    redis.Redis.from_url(stack_env["CRUCIBLE_REDIS_URL"], socket_connect_timeout=2).flushdb()
    env = {**stack_env, "CRUCIBLE_LOG_FORMAT": "json", "CRUCIBLE_LOG_LEVEL": "INFO"}
    with Stack(env, log_dir=tmp_path_factory.mktemp("json-logs"), concurrency=1, reconciler=True) as running:
        yield running


@pytest.fixture
def stack(json_stack):
    """The name the e2e fixtures (wait_for_run) look for."""
    return json_stack


def log_lines(path) -> list[dict]:
    """A process's log file as JSON objects; fails on any other line (the stack's own "=== start"
    and "=== stopped" markers aside)."""
    lines = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        if not raw or raw.startswith("=== "):
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            pytest.fail(f"{path.name}:{number} is not JSON: {raw[:300]!r}")
        assert {"time", "level", "logger", "message"} <= line.keys(), f"{path.name}:{number}: {raw[:300]}"
        lines.append(line)
    return lines


def follow(stack: Stack, run_id: int, token: str, request_id: str) -> dict:
    """Follow the run over its websocket until its end; its final status message."""
    from websockets.sync.client import connect

    url = stack.url(f"/ws/runs/{run_id}/").replace("http://", "ws://")
    headers = {"Authorization": f"Token {token}", "X-Request-ID": request_id}
    with connect(url, additional_headers=headers, open_timeout=10) as ws:
        while True:
            message = json.loads(ws.recv(timeout=30))
            if message.get("type") == "status" and message["status"] in ("succeeded", "failed", "error", "cancelled"):
                return message


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_runs_whole_story_is_in_the_json_logs_by_its_id_and_its_code_and_output_are_not(
    stack,
    e2e_user,  # noqa: F811 - the e2e fixtures imported above
    wait_for_run,  # noqa: F811
):
    marker = f"crucible-marker-{uuid.uuid4().hex}"
    code = (
        "import sys\n"
        f"print('{marker}-stdout', sys.stdin.read())\n"
        f"print('{marker}-stderr', file=sys.stderr)\n"
        f"raise ValueError('{marker}-traceback')\n"
    )
    api = requests.Session()
    api.headers.update(e2e_user.api_headers)
    submitted = api.post(
        stack.url("/api/v1/submissions/"),
        json={"name": "story", "code": code, "stdin": f"{marker}-stdin", "argv": [f"{marker}-argv"]},
        headers={"X-Request-ID": "story-submit"},
        timeout=10,
    )
    assert submitted.status_code == 201, f"{submitted.text}\n{stack.logs()}"
    assert submitted.headers["X-Request-ID"] == "story-submit"
    run_id = submitted.json()["id"]

    final = follow(stack, run_id, e2e_user.token, "story-socket")
    run = wait_for_run(api, run_id, headers=e2e_user.api_headers)
    assert (run["status"], run["reason"], final["status"]) == ("failed", "exit_code", "failed"), run
    assert marker in run["stdout"] and marker in run["stderr"]  # the run did print it
    time.sleep(1.5)  # the socket's close and the task's last line reach the files
    stack.stop()

    files = [stack.web_log, stack.worker_log, stack.reconciler_log]
    for path in files:
        assert marker not in path.read_text(), f"{path.name} holds the run's code, stdin or output"
    web, worker, reconcile = (log_lines(path) for path in files)
    assert reconcile, "the reconciler logged nothing"

    story = [line for line in web if line.get("run_id") == run_id]
    by_request = {line.get("request_id") for line in story}
    assert {"story-submit", "story-socket"} <= by_request, story
    messages = [line["message"] for line in story]
    assert any(m.startswith("audit submit") for m in messages), messages
    assert any(m.startswith(f"run {run_id} sent to the queue as task run-{run_id}-") for m in messages), messages
    assert any(m.startswith(f"websocket following run {run_id}") for m in messages), messages
    assert any(m.startswith(f"GET /api/v1/runs/{run_id}/ 200") for m in messages), messages
    assert all(line["user"] == e2e_user.username for line in story), story

    story = [line for line in worker if line.get("run_id") == run_id]
    messages = [line["message"] for line in story]
    assert any(m.startswith(f"run {run_id} started on ") for m in messages), messages
    assert any(m.startswith("sandbox ") and m.endswith(" started") for m in messages), messages
    assert f"run {run_id} ended: failed (exit_code)" in messages, messages
    assert all(line["task_id"].startswith(f"run-{run_id}-") for line in story), story
    # Celery's "received" is written by the worker's main process, which does not know the user.
    assert all(line["user"] == e2e_user.username for line in story if "received" not in line["message"]), story
