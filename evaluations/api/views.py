"""REST API v1: thin views — parse, check, call a service or selector, serialize."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from evaluations.accounts.audit import client_ip
from evaluations.accounts.permissions import require
from evaluations.api import openapi
from evaluations.api.errors import ErrorOutput
from evaluations.api.idempotency import idempotent
from evaluations.api.pagination import RunCursorPagination
from evaluations.api.serializers import (
    LogsQuery,
    RerunInput,
    RunListQuery,
    RunMetricsOutput,
    RunOutput,
    RunSummaryOutput,
    RunUrls,
    SubmissionCodeInput,
    SubmissionCreateInput,
    SubmissionOutput,
    SubmissionShareInput,
    SubmissionUploadInput,
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
    @extend_schema(
        operation_id="submission_create",
        summary="Submit code to run",
        description=(
            "Stores the submission and queues its first run. Send the code as text in JSON, or as "
            "multipart/form-data with either `code` or `file` (a .py file, or a project archive and its "
            "`entrypoint`). Limits left out get the defaults; above the site's or your quota's maximum is a 400."
        ),
        tags=["submissions"],
        request={"application/json": SubmissionCodeInput, "multipart/form-data": SubmissionUploadInput},
        parameters=openapi.IDEMPOTENT_WRITE,
        responses=openapi.responses(
            {201: OpenApiResponse(RunOutput, description="the new run, queued")},
            400,
            403,
            409,
            415,
            422,
            e409=openapi.IN_PROGRESS,
        ),  # fmt: skip
        examples=openapi.SUBMISSION_EXAMPLES,
    )
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
    pagination_class = RunCursorPagination

    @extend_schema(
        operation_id="run_list",
        summary="List runs",
        tags=["runs"],
        parameters=[RunListQuery, *openapi.HEADERS],
        responses=openapi.responses(
            {200: OpenApiResponse(RunSummaryOutput(many=True), description="a page of runs, newest first")},
            400,
            404,
            e404=OpenApiResponse(ErrorOutput, description="the cursor is not one this API gave"),
        ),  # fmt: skip
    )
    def get(self, request):
        """{"next", "previous", "results"}: a page of run summaries, newest first; `next` and
        `previous` are the URLs of the neighbouring pages (null at either end)."""
        reject_unknown_fields(request.query_params, set(RunListQuery().fields))
        # A dict, not the QueryDict, in which DRF would take `?page_size=` for no value at all.
        RunListQuery(data=request.query_params.dict()).is_valid(raise_exception=True)
        paginator = self.pagination_class()
        runs = paginator.paginate_queryset(selectors.run_list_visible_summaries(user=request.user), request, view=self)
        urls = RunUrls(request)
        return paginator.get_paginated_response([run_summary(run, request, urls) for run in runs])


class RunDetailApi(APIView):
    @extend_schema(
        operation_id="run_retrieve",
        summary="Read a run: its status, usage and output",
        tags=["runs"],
        parameters=[openapi.RUN_ID, *openapi.HEADERS],
        responses=openapi.responses({200: OpenApiResponse(RunOutput, description="the run")}, 404),
    )
    def get(self, request, run_id: int):
        run = selectors.run_get_visible(user=request.user, run_id=run_id)
        return Response(run_output(run, request))


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class OutputExpired(APIException):
    status_code = status.HTTP_410_GONE
    default_code = "output_expired"


EXPIRED = OpenApiResponse(ErrorOutput, description="the run's output expired and was deleted (CRUCIBLE_RETENTION_DAYS)")


def reject_expired_output(run) -> None:
    if run.output_expired_at is not None:
        raise OutputExpired(
            f"The output and samples of run {run.pk} expired and were deleted on "
            f"{run.output_expired_at:%Y-%m-%d %H:%M} UTC: runs' output is kept for "
            f"{settings.CRUCIBLE_RETENTION_DAYS:g} days after they end. The run's status and usage are kept."
        )


class RunCancelApi(APIView):
    @extend_schema(
        operation_id="run_cancel",
        summary="Cancel a queued or running run",
        tags=["runs"],
        request=None,
        parameters=[openapi.RUN_ID, *openapi.HEADERS],
        responses=openapi.responses(
            {202: OpenApiResponse(RunOutput, description="cancelling: the run ends as `cancelled` shortly")},
            403,
            404,
            409,
            e409=OpenApiResponse(ErrorOutput, description="the run has ended already"),
        ),  # fmt: skip
    )
    def post(self, request, run_id: int):
        run = selectors.run_get_visible(user=request.user, run_id=run_id)
        require(request.user, "evaluations.cancel_run", run)
        try:
            run = services.run_cancel(run=run, actor=request.user, ip=client_ip(request))
        except services.RunNotCancellable as exc:
            raise Conflict(str(exc)) from exc
        return Response(run_output(run, request), status=status.HTTP_202_ACCEPTED)


class SubmissionRerunApi(APIView):
    @extend_schema(
        operation_id="submission_rerun",
        summary="Run a submission again",
        tags=["submissions"],
        request=RerunInput,
        parameters=[openapi.SUBMISSION_ID, *openapi.IDEMPOTENT_WRITE],
        responses=openapi.responses(
            {201: OpenApiResponse(RunOutput, description="the new run, queued")},
            400,
            403,
            404,
            409,
            415,
            422,
            e409=openapi.IN_PROGRESS,
        ),  # fmt: skip
    )
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
    @extend_schema(
        operation_id="submission_share",
        summary="Share a submission with your team, or stop sharing it",
        tags=["submissions"],
        request=SubmissionShareInput,
        parameters=[openapi.SUBMISSION_ID, *openapi.HEADERS],
        responses=openapi.responses(
            {200: OpenApiResponse(SubmissionOutput, description="the submission")}, 400, 403, 404, 415
        ),
    )
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
    @extend_schema(
        operation_id="run_logs",
        summary="Read a run's output, from a byte offset",
        tags=["runs"],
        parameters=[
            openapi.RUN_ID,
            LogsQuery,
            openapi.response_header("X-Crucible-Offset", [200], "the offset of the first byte sent", OpenApiTypes.INT),
            openapi.response_header("X-Crucible-Next-Offset", [200], "the offset to ask for next", OpenApiTypes.INT),
            openapi.response_header("X-Crucible-Size", [200], "the bytes stored so far", OpenApiTypes.INT),
            openapi.response_header(
                "X-Crucible-Complete", [200], "`true` once the run has ended: nothing more will come", OpenApiTypes.BOOL
            ),
            *openapi.HEADERS,
        ],
        responses=openapi.responses(
            {
                (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY, description="the bytes"),
                410: EXPIRED,
            },
            400,
            404,
        ),  # fmt: skip
    )
    def get(self, request, run_id: int):
        run = selectors.run_get_visible(user=request.user, run_id=run_id)
        reject_expired_output(run)
        reject_unknown_fields(request.query_params, set(LogsQuery().fields))
        # A dict: `?offset=` is a mistake, not the default (as for RunListQuery above).
        query = LogsQuery(data=request.query_params.dict())
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
    @extend_schema(
        operation_id="run_metrics",
        summary="Read a run's CPU, memory and process samples",
        tags=["runs"],
        parameters=[openapi.RUN_ID, *openapi.HEADERS],
        responses=openapi.responses(
            {200: OpenApiResponse(RunMetricsOutput, description="every sample stored, oldest first"), 410: EXPIRED},
            404,
        ),
    )
    def get(self, request, run_id: int):
        run = selectors.run_get_visible(user=request.user, run_id=run_id)
        reject_expired_output(run)
        return Response({"samples": logstore.metrics_read(run)})


@csrf_exempt  # it changes nothing; CSRF's own 403 would be an HTML page
def endpoint_not_found(request, *args, **kwargs) -> JsonResponse:
    return JsonResponse({"detail": "No such API endpoint: the API's paths are listed at /api/docs/."}, status=404)
