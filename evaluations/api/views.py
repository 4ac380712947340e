"""REST API v1: thin views — parse, check, call a service or selector, serialize."""

from __future__ import annotations

from django.http import HttpResponse
from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from evaluations.accounts.audit import client_ip
from evaluations.accounts.permissions import require
from evaluations.api.idempotency import idempotent
from evaluations.api.pagination import RunCursorPagination
from evaluations.api.serializers import (
    LogsQuery,
    RerunInput,
    RunListQuery,
    SubmissionCreateInput,
    SubmissionShareInput,
    run_output,
    run_summary,
    submission_output,
)
from evaluations.runs import logstore, selectors, services


def reject_unknown_fields(data, allowed: set[str]) -> None:
    if not hasattr(data, "keys"):
        raise ValidationError({"detail": "the body must be a JSON object"})
    unknown = sorted(set(data.keys()) - allowed)
    if unknown:
        raise ValidationError(
            {name: [f"unknown field; allowed fields are {', '.join(sorted(allowed))}"] for name in unknown}
        )


class SubmissionCreateApi(APIView):
    @idempotent
    def post(self, request):
        require(request.user, "evaluations.submit")
        data = request.data
        reject_unknown_fields(data, set(SubmissionCreateInput().fields))
        form = SubmissionCreateInput(data=data)
        form.is_valid(raise_exception=True)
        values = form.validated_data
        # Django decodes multipart text fields with errors="replace": U+FFFD there means the
        # client sent bytes that are not UTF-8, which must not be stored as something else.
        multipart = request.content_type.startswith("multipart/")
        if multipart and "code" in values and "\ufffd" in values["code"]:
            raise ValidationError({"code": ["is not valid UTF-8 text; send JSON, or upload a .py file"]})
        run = services.submission_submit(
            owner=request.user, data=services.SubmissionInput.from_mapping(values), ip=client_ip(request)
        )
        return Response(run_output(run, request), status=status.HTTP_201_CREATED)


class RunListApi(APIView):
    def get(self, request):
        """{"next", "previous", "results"}: a page of run summaries, newest first; `next` and
        `previous` are the URLs of the neighbouring pages (null at either end)."""
        reject_unknown_fields(request.query_params, set(RunListQuery().fields))
        RunListQuery(data=request.query_params).is_valid(raise_exception=True)
        paginator = RunCursorPagination()
        runs = paginator.paginate_queryset(selectors.run_list_visible_summaries(user=request.user), request, view=self)
        return paginator.get_paginated_response([run_summary(run, request) for run in runs])


class RunDetailApi(APIView):
    def get(self, request, run_id: int):
        run = selectors.run_get_visible(user=request.user, run_id=run_id)
        return Response(run_output(run, request))


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class RunCancelApi(APIView):
    def post(self, request, run_id: int):
        run = selectors.run_get_visible(user=request.user, run_id=run_id)
        require(request.user, "evaluations.cancel_run", run)
        try:
            run = services.run_cancel(run=run, actor=request.user, ip=client_ip(request))
        except services.RunNotCancellable as exc:
            raise Conflict(str(exc)) from exc
        return Response(run_output(run, request), status=status.HTTP_202_ACCEPTED)


class SubmissionRerunApi(APIView):
    @idempotent
    def post(self, request, submission_id: int):
        latest = selectors.run_latest_of_submission(user=request.user, submission_id=submission_id)
        require(request.user, "evaluations.rerun_run", latest)
        reject_unknown_fields(request.data, set(RerunInput().fields))
        form = RerunInput(data=request.data)
        form.is_valid(raise_exception=True)
        run = services.run_rerun(run=latest, **form.validated_data, actor=request.user, ip=client_ip(request))
        return Response(run_output(run, request), status=status.HTTP_201_CREATED)


class SubmissionDetailApi(APIView):
    def patch(self, request, submission_id: int):
        """{"shared_with_team": true|false}: the owner's choice; teammates may then read its runs."""
        latest = selectors.run_latest_of_submission(user=request.user, submission_id=submission_id)
        require(request.user, "evaluations.share_submission", latest)
        reject_unknown_fields(request.data, set(SubmissionShareInput().fields))
        form = SubmissionShareInput(data=request.data)
        form.is_valid(raise_exception=True)
        submission = latest.submission
        services.submission_set_shared(
            actor=request.user, submission=submission, shared=form.validated_data["shared_with_team"], request=request
        )
        return Response(submission_output(submission, request))


class RunLogsApi(APIView):
    def get(self, request, run_id: int):
        run = selectors.run_get_visible(user=request.user, run_id=run_id)
        reject_unknown_fields(request.query_params, set(LogsQuery().fields))
        query = LogsQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        stream, offset = query.validated_data["stream"], query.validated_data["offset"]
        data = logstore.log_read(run, stream, offset, query.validated_data.get("limit"))
        response = HttpResponse(data, content_type="application/octet-stream")
        response["X-Crucible-Offset"] = str(offset)
        response["X-Crucible-Next-Offset"] = str(offset + len(data))
        response["X-Crucible-Size"] = str(logstore.log_size(run, stream))
        response["X-Crucible-Complete"] = "true" if run.is_terminal else "false"
        if query.validated_data["download"]:
            response["Content-Disposition"] = f'attachment; filename="run-{run.pk}-{stream}.log"'
        return response


class RunMetricsApi(APIView):
    def get(self, request, run_id: int):
        run = selectors.run_get_visible(user=request.user, run_id=run_id)
        return Response({"samples": logstore.metrics_read(run)})
