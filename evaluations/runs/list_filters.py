"""The run list's filters (status, reason, queued between two dates, a name) and its pages: a GET
form, so a filtered list is a link; bad values come back as form errors, never a 500."""

from __future__ import annotations

from datetime import datetime, time

from django import forms
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.utils import timezone

from evaluations.models import Run, RunReason, RunStatus
from evaluations.runs.words import reason_words

PAGE_SIZE = 50


class RunFilterForm(forms.Form):
    q = forms.CharField(required=False, max_length=200, label="Name")
    status = forms.ChoiceField(required=False, choices=[("", "any status"), *[(s, s) for s in RunStatus.values]])
    reason = forms.ChoiceField(
        required=False,
        choices=[("", "any reason"), *[(r, reason_words(r) or r.replace("_", " ")) for r in RunReason.values]],
    )
    since = forms.DateField(required=False, label="Queued from", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="to", widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise forms.ValidationError("The first date is after the second: swap them.")
        return data


def runs_filtered(runs: QuerySet[Run], data: dict) -> QuerySet[Run]:
    if data.get("q"):
        runs = runs.filter(submission__name__icontains=data["q"])
    if data.get("status"):
        runs = runs.filter(status=data["status"])
    if data.get("reason"):
        runs = runs.filter(reason=data["reason"])
    zone = timezone.get_current_timezone()
    if data.get("since"):
        runs = runs.filter(queued_at__gte=datetime.combine(data["since"], time.min, tzinfo=zone))
    if data.get("until"):
        runs = runs.filter(queued_at__lte=datetime.combine(data["until"], time.max, tzinfo=zone))
    return runs


def runs_page(runs: QuerySet[Run], number: str | None) -> Page:
    """The page asked for; the last one for a number past it, the first for anything not a number."""
    return Paginator(runs, PAGE_SIZE).get_page(number)
