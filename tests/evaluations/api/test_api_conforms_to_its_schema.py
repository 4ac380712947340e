"""schemathesis against the schema the site serves (/api/schema/): every operation, as a researcher
with a token and as nobody, then chains of calls along the schema's links (submit, then read, cancel,
share and re-run what was made). No answer may be a 5xx or contradict the schema (status code, media
type, headers, body), and what the schema calls invalid must be refused.

The site runs in this process (its WSGI handler, on the test database); submissions stay queued, as
no task is sent (`no_worker`). Examples are derandomized (every run tries the same ones) and few
enough for about half a minute; search deeper with CRUCIBLE_FUZZ_EXAMPLES=500.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

pytestmark = pytest.mark.django_db

SCHEMA_URL = "/api/schema/?format=json"
MAX_EXAMPLES = int(os.environ.get("CRUCIBLE_FUZZ_EXAMPLES", "40"))
# Every check but one: a schema cannot say which archive unpacks, nor which limits fit a user's quota,
# so requests it calls valid may still get a 400.
NOT_CHECKED = [positive_data_acceptance]
FUZZ = settings(suppress_health_check=list(HealthCheck), deadline=None, database=None, derandomize=True)


def _site():
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


# Loaded when the module is collected (schemathesis's lazy loader does not work with this pytest).
schema = schemathesis.openapi.from_wsgi(SCHEMA_URL, _site())
schema.config.generation.update(modes=["positive", "negative"], max_examples=MAX_EXAMPLES)


@pytest.fixture(autouse=True)
def site_on_the_tests_connection(no_worker):
    """As in Django's test client, the end of a request must not close the database connection (and
    with it the test's transaction); submissions send no task."""
    from django.core import signals
    from django.db import close_old_connections

    for signal in (signals.request_started, signals.request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (signals.request_started, signals.request_finished):
        signal.connect(close_old_connections)


@contextmanager
def rolled_back():
    """Undo what one example changed in the database: hypothesis replays examples (to shrink a failure)
    and must get the same answers, so each starts from the rows the fixtures made."""
    from django.db import transaction

    with transaction.atomic():
        yield
        transaction.set_rollback(True)


@pytest.fixture
def researcher_headers(make_user, make_token, make_run) -> dict[str, str]:
    """A researcher's token, with a run of each kind already there for the operations on one."""
    researcher = make_user()
    make_run(researcher, status="succeeded", reason="exit_code", stdout=b"hello\n")
    make_run(researcher)
    return {"Authorization": f"Token {make_token(researcher).key}"}


@schema.parametrize()
@FUZZ
def test_a_researcher_gets_only_answers_the_schema_describes(case, researcher_headers):
    with rolled_back():
        case.call_and_validate(headers=researcher_headers, excluded_checks=NOT_CHECKED)


@schema.parametrize()
@settings(FUZZ, max_examples=max(1, MAX_EXAMPLES // 4))  # without a token nearly every answer is the same 401
def test_nobody_gets_only_answers_the_schema_describes(case):
    with rolled_back():
        case.call_and_validate(excluded_checks=NOT_CHECKED)


def test_a_researcher_following_the_links_gets_only_answers_the_schema_describes(researcher_headers):
    from django.db import transaction

    class Researcher(schema.as_state_machine()):
        def setup(self):
            self.savepoint = transaction.savepoint()  # as rolled_back(), for a whole chain of calls

        def teardown(self):
            transaction.savepoint_rollback(self.savepoint)

        def get_call_kwargs(self, case):
            return {"headers": researcher_headers}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(
                response,
                excluded_checks=NOT_CHECKED,
                headers=researcher_headers,  # sent by us, not generated: the auth checks try without it
                transport_kwargs=kwargs,
                recorder=self.recorder,
            )

    Researcher.run(settings=settings(FUZZ, max_examples=MAX_EXAMPLES, stateful_step_count=8))
