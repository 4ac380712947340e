"""The run list comes in pages of 50, filtered by status, reason, queued date and name; bad filter
values are a 400 with the form's message, never a 500."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from evaluations.models import Run


def listed(response) -> list[int]:
    import re

    return [int(i) for i in re.findall(r'<tr data-run-id="(\d+)"', response.content.decode())]


def test_the_list_comes_in_pages_of_fifty_newest_first(client, user, make_run) -> None:
    runs = [make_run(user, name=f"r{i}") for i in range(55)]
    newest_first = [r.pk for r in sorted(runs, key=lambda r: (r.queued_at, r.pk), reverse=True)]

    first, second = client.get("/runs/"), client.get("/runs/?page=2")

    assert listed(first) == newest_first[:50] and listed(second) == newest_first[50:]
    assert "page 1 of 2" in first.content.decode() and 'rel="next"' in first.content.decode()
    assert listed(client.get("/runs/?page=99")) == newest_first[50:]  # past the end: the last page
    assert listed(client.get("/runs/?page=x")) == newest_first[:50]


def test_filters_narrow_the_list_and_stay_in_the_page_links(client, user, make_run) -> None:
    keep = [make_run(user, name=f"train {i}", status="failed", reason="memory_limit") for i in range(51)]
    make_run(user, name="train other", status="failed", reason="timeout")
    make_run(user, name="eval", status="failed", reason="memory_limit")

    response = client.get("/runs/?q=TRAIN&status=failed&reason=memory_limit")

    html = response.content.decode()
    assert response.status_code == 200
    assert len(listed(response)) == 50 and set(listed(response)) <= {r.pk for r in keep}
    assert "51 runs match" in html
    assert 'href="?q=TRAIN&amp;status=failed&amp;reason=memory_limit&amp;page=2"' in html
    assert '<option value="memory_limit" selected>Out of memory</option>' in html


def test_dates_filter_by_when_runs_were_queued(client, user, make_run) -> None:
    old, new = make_run(user, name="old"), make_run(user, name="new")
    Run.objects.filter(pk=old.pk).update(queued_at=timezone.now() - timedelta(days=10))
    today = timezone.localdate().isoformat()

    assert listed(client.get(f"/runs/?since={today}")) == [new.pk]
    assert listed(client.get(f"/runs/?until={(timezone.localdate() - timedelta(days=5)).isoformat()}")) == [old.pk]


@pytest.mark.parametrize(
    "query, message",
    [
        ("status=exploded", "Select a valid choice."),
        ("since=yesterday", "Enter a valid date."),
        ("since=2026-02-01&until=2026-01-01", "The first date is after the second"),
        ("q=" + "x" * 201, "at most 200 characters"),
    ],
)
def test_bad_filters_are_a_400_that_says_why(client, user, make_run, query, message) -> None:
    make_run(user)

    response = client.get(f"/runs/?{query}")

    assert response.status_code == 400 and message in response.content.decode()


def test_no_match_says_so_and_offers_the_whole_list(client, user, make_run) -> None:
    make_run(user, name="alpha")

    html = client.get("/runs/?q=beta").content.decode()

    assert "No runs match these filters." in html
