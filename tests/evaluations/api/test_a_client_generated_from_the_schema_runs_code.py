"""A Python client generated from the schema a running server serves (openapi-python-client, as the
README shows) submits code and a project upload to a real daphne + Celery worker + runsc, and reads
each run back until it has ended."""

from __future__ import annotations

import importlib
import io
import subprocess
import sys
import time
import zipfile

import pytest
import requests

from tests.e2e import conftest as e2e
from tests.support.stack import VENV_BIN

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# The end-to-end tests' fixtures: daphne + a Celery worker on the test database, a user with a token.
stack, stack_env, e2e_user = e2e.stack, e2e.stack_env, e2e.e2e_user

PACKAGE = "crucible_client"
CONFIG = f"package_name_override: {PACKAGE}\npost_hooks: []\n"  # no formatter run: ruff is not needed


@pytest.fixture(scope="module")
def crucible_client(stack, tmp_path_factory):
    """The generated package, imported from a temporary directory."""
    where = tmp_path_factory.mktemp("generated-client")
    resp = requests.get(stack.url("/api/schema/"), timeout=10)
    assert resp.status_code == 200, resp.text[:500]
    (where / "openapi.yaml").write_bytes(resp.content)
    (where / "config.yaml").write_text(CONFIG)
    generator = str(VENV_BIN / "openapi-python-client")
    command = [generator, "generate", "--path", "openapi.yaml", "--config", "config.yaml"]
    command += ["--meta", "none", "--output-path", PACKAGE]
    done = subprocess.run(command, cwd=where, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr  # every part was understood
    sys.path.insert(0, str(where))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(where))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


@pytest.fixture
def client(crucible_client, stack, e2e_user):
    with crucible_client.AuthenticatedClient(base_url=stack.base_url, token=e2e_user.token, prefix="Token") as api:
        yield api


def run_to_its_end(client, run_id: int, stack):
    from crucible_client.api.runs import run_retrieve
    from crucible_client.models import Run

    deadline = time.monotonic() + e2e.RUN_TIMEOUT_SECONDS
    while True:
        run = run_retrieve.sync(client=client, run_id=run_id)
        assert isinstance(run, Run), f"{run}\n{stack.logs()}"
        if run.status.value in e2e.TERMINAL or time.monotonic() > deadline:
            return run
        time.sleep(0.1)


def test_the_generated_client_submits_code_and_reads_its_run_to_the_end(client, stack):
    from crucible_client.api.runs import run_logs
    from crucible_client.api.submissions import submission_create
    from crucible_client.models import Run, RunLogsStream, StatusEnum, SubmissionCodeRequest

    created = submission_create.sync(
        client=client,
        body=SubmissionCodeRequest(code='print("hello from a generated client")\n', name="client", wall_seconds=10),
        idempotency_key="generated-client-1",
    )
    assert isinstance(created, Run), created
    assert created.status == StatusEnum.QUEUED

    run = run_to_its_end(client, created.id, stack)

    assert run.status == StatusEnum.SUCCEEDED, f"{run}\n{stack.logs()}"
    assert run.stdout == "hello from a generated client\n"
    assert run.limits.wall_seconds == 10
    logs = run_logs.sync_detailed(client=client, run_id=run.id, stream=RunLogsStream.STDOUT)
    assert logs.status_code == 200
    assert logs.content == b"hello from a generated client\n"
    assert logs.headers["X-Crucible-Complete"] == "true"


def test_the_generated_client_uploads_a_project_with_arguments_and_input(client, stack):
    from crucible_client.api.submissions import submission_create
    from crucible_client.models import Run, StatusEnum, SubmissionUploadRequest
    from crucible_client.types import File

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("main.py", "import sys\nfrom helper import greet\nprint(greet(sys.argv[1:], sys.stdin.read()))\n")
        zf.writestr("helper.py", "def greet(args, text):\n    return f'{args} {text.strip()}'\n")
    archive.seek(0)

    created = submission_create.sync(
        client=client,
        body=SubmissionUploadRequest(
            name="project",
            file=File(payload=archive, file_name="project.zip", mime_type="application/zip"),
            entrypoint="main.py",
            argv="--epochs 3",
            stdin="some input\n",
        ),
    )
    assert isinstance(created, Run), created

    run = run_to_its_end(client, created.id, stack)

    assert run.status == StatusEnum.SUCCEEDED, f"{run}\n{stack.logs()}"
    assert run.stdout == "['--epochs', '3'] some input\n"
    assert (run.submission.archive_name, run.submission.argv) == ("project.zip", ["--epochs", "3"])
