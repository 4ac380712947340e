"""REST API v1 for batches: submit one, read it and its results, cancel it, re-run its failed runs."""

from __future__ import annotations

import csv
import io

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from evaluations.accounts.audit import client_ip
from evaluations.accounts.permissions import require
from evaluations.api import openapi
from evaluations.api.batch_serializers import (
    BatchCodeInput,
    BatchCreateInput,
    BatchListOutput,
    BatchOutput,
    BatchResultOutput,
    BatchUploadInput,
    batch_output,
    batch_results,
    batch_summary,
)
from evaluations.api.errors import ErrorOutput
from evaluations.api.idempotency import idempotent
from evaluations.api.views import Conflict, reject_unknown_fields
from evaluations.batches import selectors, services
from evaluations.batches.selectors import RESULT_COLUMNS

BATCH_ID = OpenApiParameter("batch_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="the batch's `id`")
# Lists show the newest batches; older ones stay readable by id.
BATCH_LIST_SIZE = 100


def _respond(batch, request, status_code: int = status.HTTP_200_OK) -> Response:
    runs = list(selectors.batch_runs(batch=batch))
    stats = selectors.batch_stats(runs=runs)
    return Response(batch_output(batch, request, stats, runs), status=status_code)


class BatchCreateApi(APIView):
    @extend_schema(
        operation_id="batch_create",
        summary="Submit a batch: one program over many inputs and configurations",
        description=(
            "Stores the code once and queues one run per input × configuration (at most 1,000). The runs "
            "count against your daily quotas as the runs they are: a batch that does not fit is refused whole "
            "(429, naming the quota). Your concurrent-run quota caps how many of them run at once; the rest "
            "wait in your queue, and other users' runs take turns with them."
        ),
        tags=["batches"],
        request={"application/json": BatchCodeInput, "multipart/form-data": BatchUploadInput},
        parameters=openapi.IDEMPOTENT_WRITE,
        responses=openapi.responses(
            {201: OpenApiResponse(BatchOutput, description="the new batch, its runs queued")},
            400,
            403,
            409,
            415,
            422,
            e409=openapi.IN_PROGRESS,
        ),  # fmt: skip
    )
    @idempotent
    def post(self, request):
        require(request.user, "evaluations.submit")
        reject_unknown_fields(request.data, set(BatchCreateInput().fields))
        form = BatchCreateInput(data=request.data)
        form.is_valid(raise_exception=True)
        batch = services.batch_submit(owner=request.user, data=form.submit_input(), ip=client_ip(request))
        return _respond(batch, request, status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="batch_list",
        summary="List batches, newest first",
        tags=["batches"],
        parameters=openapi.HEADERS,
        responses=openapi.responses({200: OpenApiResponse(BatchListOutput, description="the newest 100 batches")}),
    )
    def get(self, request):
        batches = list(selectors.batch_list_visible(user=request.user)[:BATCH_LIST_SIZE])
        stats = selectors.batch_stats_many(batch_ids=[batch.pk for batch in batches])
        return Response({"results": [batch_summary(batch, request, stats[batch.pk]) for batch in batches]})


class BatchDetailApi(APIView):
    @extend_schema(
        operation_id="batch_retrieve",
        summary="Read a batch: counts by status and reason, run times, and its runs",
        tags=["batches"],
        parameters=[BATCH_ID, *openapi.HEADERS],
        responses=openapi.responses({200: OpenApiResponse(BatchOutput, description="the batch")}, 404),
    )
    def get(self, request, batch_id: int):
        return _respond(selectors.batch_get_visible(user=request.user, batch_id=batch_id), request)


class BatchCancelApi(APIView):
    @extend_schema(
        operation_id="batch_cancel",
        summary="Cancel a batch's queued runs and stop its running ones",
        tags=["batches"],
        request=None,
        parameters=[BATCH_ID, *openapi.HEADERS],
        responses=openapi.responses(
            {202: OpenApiResponse(BatchOutput, description="cancelling: running runs end within a second")}, 403, 404
        ),
    )
    def post(self, request, batch_id: int):
        batch = selectors.batch_get_visible(user=request.user, batch_id=batch_id)
        require(request.user, "evaluations.cancel_run", batch)
        services.batch_cancel(batch=batch, actor=request.user, ip=client_ip(request))
        return _respond(batch, request, status.HTTP_202_ACCEPTED)


class BatchRerunFailedApi(APIView):
    @extend_schema(
        operation_id="batch_rerun_failed",
        summary="Run a batch's failed runs again, as a new batch",
        tags=["batches"],
        request=None,
        parameters=[BATCH_ID, *openapi.IDEMPOTENT_WRITE],
        responses=openapi.responses(
            {201: OpenApiResponse(BatchOutput, description="the new batch, with `rerun_of` set")},
            400,
            403,
            404,
            409,
            422,
            e409=OpenApiResponse(ErrorOutput, description="no run of the batch failed or ended in error"),
        ),  # fmt: skip
    )
    @idempotent
    def post(self, request, batch_id: int):
        batch = selectors.batch_get_visible(user=request.user, batch_id=batch_id)
        require(request.user, "evaluations.rerun_run", batch)
        try:
            again = services.batch_rerun_failed(batch=batch, ip=client_ip(request))
        except services.NothingToRerun as exc:
            raise Conflict(f"{exc}: nothing to run again") from exc
        return _respond(again, request, status.HTTP_201_CREATED)


def _results(request, batch_id: int) -> tuple:
    batch = selectors.batch_get_visible(user=request.user, batch_id=batch_id)
    return batch, batch_results(batch, list(selectors.batch_runs(batch=batch)))


class BatchResultsJsonApi(APIView):
    @extend_schema(
        operation_id="batch_results_json",
        summary="A batch's results as JSON: one row per run",
        tags=["batches"],
        parameters=[BATCH_ID, *openapi.HEADERS],
        responses=openapi.responses({200: OpenApiResponse(BatchResultOutput(many=True), description="rows")}, 404),
    )
    def get(self, request, batch_id: int):
        batch, rows = _results(request, batch_id)
        response = Response(rows)
        response["Content-Disposition"] = f'attachment; filename="batch-{batch.pk}-results.json"'
        return response


class BatchResultsCsvApi(APIView):
    @extend_schema(
        operation_id="batch_results_csv",
        summary="A batch's results as CSV: a header row, then one row per run",
        tags=["batches"],
        parameters=[BATCH_ID, *openapi.HEADERS],
        responses=openapi.responses(
            {(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description=", ".join(RESULT_COLUMNS))}, 404
        ),
    )
    def get(self, request, batch_id: int):
        batch, rows = _results(request, batch_id)
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=RESULT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="batch-{batch.pk}-results.csv"'
        return response
