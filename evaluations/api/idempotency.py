"""`Idempotency-Key` on the API's writes that create runs (submissions and re-runs): a retry with the
same key gets the first answer again (`Idempotent-Replayed: true`) instead of making a second run.

A key belongs to one user and one request: the same key with another body, file or endpoint is
refused (422). It is claimed by inserting its row in the same transaction as the run, so the unique
constraint on (user, key) decides between concurrent requests: the second insert waits for the first
transaction, fails, and that request replays what the first one stored. Only 2xx answers are kept;
any other answer rolls the claim back with the work, so a corrected request may reuse its key. After
KEY_LIFETIME a key is free again; idempotent_requests_purge deletes the expired rows.
"""

from __future__ import annotations

import functools
import hashlib
import json
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from evaluations.models import IdempotentRequest

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_CHARS = 200  # IdempotentRequest.key's max_length
KEY_LIFETIME = timedelta(hours=24)


class IdempotencyKeyReused(APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "idempotency_key_reused"
    default_detail = (
        f"This {HEADER} was used for a different request in the last 24 hours: the same key must come with "
        "the same endpoint, body and files. Use a new key for a new request."
    )


class IdempotentRequestInProgress(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "idempotent_request_in_progress"
    default_detail = f"A request with this {HEADER} is still in progress; retry in a moment to get its answer."


def idempotent(handler):
    """For an APIView method that creates runs: answers a repeated Idempotency-Key as described above."""

    @functools.wraps(handler)
    def wrapper(view, request, *args, **kwargs):
        key = idempotency_key(request)
        if key is None:
            return handler(view, request, *args, **kwargs)
        return respond_once(request, key=key, respond=lambda: handler(view, request, *args, **kwargs))

    return wrapper


def idempotency_key(request) -> str | None:
    """The request's key, None without the header; 400 unless it is 1 to 200 printable ASCII characters."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not key.strip() or len(key) > MAX_KEY_CHARS or not (key.isascii() and key.isprintable()):
        raise ValidationError({HEADER: [f"must be 1 to {MAX_KEY_CHARS} printable ASCII characters"]})
    return key


def request_fingerprint(request) -> str:
    """SHA-256 of what makes two requests the same: method, path, media type, fields and file bytes
    (not the multipart boundary, nor the JSON's spacing or key order, which a retry may change)."""
    data = request.data
    if hasattr(data, "lists"):  # a form: every value of every field, an upload by its bytes
        data = {name: [_file_digest(v) if hasattr(v, "chunks") else v for v in values] for name, values in data.lists()}
    canonical = {
        "method": request.method,
        "path": request.get_full_path(),
        "media_type": request.content_type.split(";")[0].strip().lower(),
        "data": data,
    }
    # ensure_ascii: a lone surrogate in the JSON cannot break the encoding.
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, ensure_ascii=True).encode()).hexdigest()


def _file_digest(upload) -> dict:
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)  # the view reads it next
    return {"name": upload.name, "size": upload.size, "sha256": digest.hexdigest()}


def respond_once(request, *, key: str, respond) -> Response:
    """respond() once per (user, key): the stored answer if there is one, else respond()'s, kept if 2xx."""
    user, fingerprint = request.user, request_fingerprint(request)
    stored = _stored_answer(user=user, key=key)
    if stored is not None:
        return _replay(stored, fingerprint=fingerprint)
    with transaction.atomic():
        if _claim(user=user, key=key, fingerprint=fingerprint):
            response = respond()
            if not status.is_success(response.status_code):
                transaction.set_rollback(True)
                return response
            IdempotentRequest.objects.filter(user=user, key=key).update(
                status_code=response.status_code, response=_as_json(response.data)
            )
            return response
    # Another request claimed the key first; its transaction has ended by now (our insert waited for it).
    stored = _stored_answer(user=user, key=key)
    if stored is None:
        raise IdempotentRequestInProgress()
    return _replay(stored, fingerprint=fingerprint)


def _stored_answer(*, user, key: str) -> IdempotentRequest | None:
    oldest = timezone.now() - KEY_LIFETIME
    return IdempotentRequest.objects.filter(user=user, key=key, created__gte=oldest).first()


def _claim(*, user, key: str, fingerprint: str) -> bool:
    """Insert the key's row (answer to come), in the caller's transaction; False if it is taken."""
    IdempotentRequest.objects.filter(user=user, key=key, created__lt=timezone.now() - KEY_LIFETIME).delete()
    try:
        with transaction.atomic():
            IdempotentRequest.objects.create(user=user, key=key, request_hash=fingerprint, status_code=0, response={})
    except IntegrityError:
        return False
    return True


def _replay(stored: IdempotentRequest, *, fingerprint: str) -> Response:
    if stored.request_hash != fingerprint:
        raise IdempotencyKeyReused()
    return Response(stored.response, status=stored.status_code, headers={REPLAYED_HEADER: "true"})


def _as_json(data) -> object:
    """The body as the client got it (datetimes as DRF writes them), for a JSONField."""
    return json.loads(JSONRenderer().render(data))


def idempotent_requests_purge(*, now: datetime | None = None) -> int:
    """Delete the keys older than KEY_LIFETIME (their users may use them again); how many were deleted."""
    now = now or timezone.now()
    deleted, _ = IdempotentRequest.objects.filter(created__lt=now - KEY_LIFETIME).delete()
    return deleted
