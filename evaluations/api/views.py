"""REST API v1: thin views — parse, check, call a service or selector, serialize."""

from __future__ import annotations

from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from evaluations import selectors, services
from evaluations.api.serializers import SubmissionInput, run_output
from evaluations.uploads import code_from_upload


def reject_unknown_fields(data, allowed: set[str]) -> None:
    if not hasattr(data, "keys"):
        raise ValidationError({"detail": "the body must be a JSON object"})
    unknown = sorted(set(data.keys()) - allowed)
    if unknown:
        raise ValidationError(
            {name: [f"unknown field; allowed fields are {', '.join(sorted(allowed))}"] for name in unknown}
        )


class SubmissionCreateApi(APIView):
    def post(self, request):
        data = request.data
        reject_unknown_fields(data, set(SubmissionInput().fields))
        form = SubmissionInput(data=data)
        form.is_valid(raise_exception=True)
        values = form.validated_data
        if "code" in values:
            code = values["code"]
            # Django decodes multipart text fields with errors="replace": U+FFFD there means the
            # client sent bytes that are not UTF-8, which must not be stored as something else.
            if "\ufffd" in code and request.content_type.startswith("multipart/"):
                raise ValidationError({"code": ["is not valid UTF-8 text; send JSON, or upload a .py file"]})
        else:
            code = code_from_upload(values["file"], field="file")
        run = services.submission_create(
            owner=request.user,
            name=values.get("name"),
            code=code,
            wall_seconds=values.get("wall_seconds"),
            memory_mb=values.get("memory_mb"),
        )
        return Response(run_output(run, request), status=status.HTTP_201_CREATED)


class RunListApi(APIView):
    def get(self, request):
        runs = selectors.run_list_visible(user=request.user)[:100]
        return Response({"results": [run_output(run, request) for run in runs]})


class RunDetailApi(APIView):
    def get(self, request, run_id: int):
        run = selectors.run_get_visible(user=request.user, run_id=run_id)
        return Response(run_output(run, request))
