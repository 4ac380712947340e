"""`Idempotency-Key` on submissions and re-runs: a retry gets the first answer and makes no second run;
a reused key with another request, or a malformed key, is refused; only successful answers are kept."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from rest_framework.test import APIClient

from evaluations.api.idempotency import idempotent_requests_purge
from evaluations.models import IdempotentRequest, Run, RunStatus

SUBMIT = "/api/v1/submissions/"
KEY = "3f1c9a2e-retry-me"


def submit(api, body: dict | None = None, key: str | None = KEY, **kwargs):
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return api.post(SUBMIT, body if body is not None else {"code": "print(1)\n"}, format="json", **headers, **kwargs)


def test_a_retry_with_the_same_key_gets_the_first_answer_and_makes_no_second_run(api_client, counts) -> None:
    first = submit(api_client)
    retry = submit(api_client)

    assert first.status_code == retry.status_code == 201, retry.content
    assert retry.json() == first.json()
    assert retry["Idempotent-Replayed"] == "true"
    assert not first.has_header("Idempotent-Replayed")
    assert counts() == (1, 1)


def test_the_retry_gets_the_answer_as_it_was_even_after_the_run_moved_on(api_client) -> None:
    first = submit(api_client).json()
    Run.objects.filter(pk=first["id"]).update(status=RunStatus.RUNNING, started_at=timezone.now())

    retry = submit(api_client).json()

    assert retry["status"] == "queued"
    assert retry == first


def test_the_same_json_with_other_spacing_and_key_order_is_the_same_request(api_client, counts) -> None:
    first = api_client.generic(
        "POST", SUBMIT, '{"code": "print(1)", "name": "x"}', content_type="application/json", HTTP_IDEMPOTENCY_KEY=KEY
    )
    retry = api_client.generic(
        "POST", SUBMIT, '{"name":"x","code":"print(1)"}', content_type="application/json", HTTP_IDEMPOTENCY_KEY=KEY
    )

    assert (first.status_code, retry.status_code) == (201, 201)
    assert retry["Idempotent-Replayed"] == "true"
    assert counts() == (1, 1)


def test_requests_without_a_key_are_each_a_new_run(api_client, counts) -> None:
    assert submit(api_client, key=None).status_code == 201
    assert submit(api_client, key=None).status_code == 201

    assert counts() == (2, 2)
    assert not IdempotentRequest.objects.exists()


def test_the_same_key_with_another_body_answers_422_and_makes_nothing(api_client, counts) -> None:
    assert submit(api_client, {"code": "print(1)\n"}).status_code == 201

    response = submit(api_client, {"code": "print(2)\n"})

    assert response.status_code == 422
    assert "different request" in response.json()["detail"]
    assert "Idempotency-Key" in response.json()["detail"]
    assert counts() == (1, 1)


def test_the_same_key_on_another_endpoint_answers_422(api_client, user, make_run, counts) -> None:
    run = make_run(user, status=RunStatus.SUCCEEDED)
    assert submit(api_client).status_code == 201

    response = api_client.post(
        f"/api/v1/submissions/{run.submission_id}/runs/", {}, format="json", HTTP_IDEMPOTENCY_KEY=KEY
    )

    assert response.status_code == 422
    assert counts() == (2, 2)


def test_another_user_may_use_the_same_key_for_their_own_request(api_client, other_user, make_token) -> None:
    theirs = APIClient()
    theirs.credentials(HTTP_AUTHORIZATION=f"Token {make_token(other_user).key}")
    mine = submit(api_client)

    response = submit(theirs)

    assert response.status_code == 201
    assert not response.has_header("Idempotent-Replayed")
    assert response.json()["id"] != mine.json()["id"]
    assert response.json()["submission"]["owner"] == other_user.username


def test_a_users_tokens_share_their_keys(api_client, user, make_token, counts) -> None:
    other_token = APIClient()
    other_token.credentials(HTTP_AUTHORIZATION=f"Token {make_token(user, 'laptop').key}")
    first = submit(api_client)

    retry = submit(other_token)

    assert retry.json() == first.json() and retry["Idempotent-Replayed"] == "true"
    assert counts() == (1, 1)


@pytest.mark.parametrize(
    "key",
    ["", "   ", "k" * 201, "clé", "tab\there", "new\x7fline", "\x01"],
    ids=["empty", "blank", "201 characters", "not ASCII", "a tab", "DEL", "a control character"],
)
def test_a_malformed_key_answers_400_and_makes_nothing(api_client, counts, key) -> None:
    response = submit(api_client, key=key)

    assert response.status_code == 400
    assert response.json()["Idempotency-Key"] == ["must be 1 to 200 printable ASCII characters"]
    assert counts() == (0, 0)


def test_a_key_of_200_printable_characters_is_accepted(api_client) -> None:
    key = ("a-Z_0.9 ~!" * 20)[:200]

    assert submit(api_client, key=key).status_code == 201
    assert submit(api_client, key=key)["Idempotent-Replayed"] == "true"


def test_a_refused_request_keeps_no_answer_so_its_fix_may_reuse_the_key(api_client, counts) -> None:
    refused = submit(api_client, {"code": ""})
    assert refused.status_code == 400

    fixed = submit(api_client, {"code": "print('fixed')\n"})

    assert fixed.status_code == 201
    assert not fixed.has_header("Idempotent-Replayed")
    assert counts() == (1, 1)
    assert IdempotentRequest.objects.get().status_code == 201


def test_an_answer_over_quota_is_not_kept(api_client, user, make_run) -> None:
    from evaluations.models import QuotaOverride

    QuotaOverride.objects.filter(user=user).update(concurrent_runs=1)
    running = make_run(user, status=RunStatus.RUNNING)
    assert submit(api_client).status_code == 429
    Run.objects.filter(pk=running.pk).update(status=RunStatus.SUCCEEDED)

    response = submit(api_client)

    assert response.status_code == 201
    assert not response.has_header("Idempotent-Replayed")


def test_a_key_older_than_a_day_may_be_used_again(api_client, counts) -> None:
    first = submit(api_client, {"code": "print(1)\n"}).json()
    IdempotentRequest.objects.update(created=timezone.now() - timedelta(hours=24, seconds=1))

    again = submit(api_client, {"code": "print('another')\n"})

    assert again.status_code == 201
    assert again.json()["id"] != first["id"]
    assert counts() == (2, 2)
    assert IdempotentRequest.objects.count() == 1


def test_a_retried_rerun_makes_one_new_run(api_client, user, make_run, counts) -> None:
    run = make_run(user, status=RunStatus.SUCCEEDED)
    url = f"/api/v1/submissions/{run.submission_id}/runs/"

    first = api_client.post(url, {"memory_mb": 64}, format="json", HTTP_IDEMPOTENCY_KEY=KEY)
    retry = api_client.post(url, {"memory_mb": 64}, format="json", HTTP_IDEMPOTENCY_KEY=KEY)
    other = api_client.post(url, {"memory_mb": 128}, format="json", HTTP_IDEMPOTENCY_KEY=KEY)

    assert (first.status_code, retry.status_code, other.status_code) == (201, 201, 422)
    assert retry.json() == first.json() and retry["Idempotent-Replayed"] == "true"
    assert counts() == (1, 2)


def upload(content: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile("main.py", content, content_type="text/x-python")


def test_a_retried_upload_with_the_same_bytes_is_replayed(api_client, counts) -> None:
    first = api_client.post(SUBMIT, {"file": upload(b"print(1)\n"), "name": "up"}, HTTP_IDEMPOTENCY_KEY=KEY)
    retry = api_client.post(SUBMIT, {"file": upload(b"print(1)\n"), "name": "up"}, HTTP_IDEMPOTENCY_KEY=KEY)

    assert first.status_code == 201, first.content
    assert Run.objects.get().submission.code == "print(1)\n"  # hashing the upload left it whole for the run
    assert retry.json() == first.json() and retry["Idempotent-Replayed"] == "true"
    assert counts() == (1, 1)


def test_an_upload_with_other_bytes_under_the_same_name_answers_422(api_client, counts) -> None:
    assert api_client.post(SUBMIT, {"file": upload(b"print(1)\n")}, HTTP_IDEMPOTENCY_KEY=KEY).status_code == 201

    response = api_client.post(SUBMIT, {"file": upload(b"print(2)\n")}, HTTP_IDEMPOTENCY_KEY=KEY)

    assert response.status_code == 422
    assert counts() == (1, 1)


def test_purging_deletes_the_keys_older_than_a_day_and_says_how_many(api_client, user) -> None:
    now = timezone.now()
    for i, age in enumerate([timedelta(hours=25), timedelta(hours=24, seconds=1), timedelta(hours=23)]):
        assert submit(api_client, key=f"key-{i}").status_code == 201
        IdempotentRequest.objects.filter(key=f"key-{i}").update(created=now - age)

    assert idempotent_requests_purge(now=now) == 2
    assert list(IdempotentRequest.objects.values_list("key", flat=True)) == ["key-2"]
    assert idempotent_requests_purge(now=now) == 0
    assert idempotent_requests_purge(now=now + timedelta(hours=2)) == 1
