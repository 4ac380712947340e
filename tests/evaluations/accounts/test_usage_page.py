"""/usage/: today's usage against each quota, with bars, and when the daily counts reset."""

from __future__ import annotations

import re

from django.test import Client

from evaluations.accounts import quotas
from evaluations.models import QuotaPolicy, Role, RunStatus

MiB = 1024 * 1024


def row(html: str, name: str) -> str:
    match = re.search(rf'<tr id="quota-{name}" class="quota-(\w+)">(.*?)</tr>', html, re.S)
    assert match, f"no row for {name}"
    return match.group(1) + " " + match.group(2)


def test_the_usage_page_shows_todays_usage_against_each_quota(make_user, make_run, settings) -> None:
    settings.CRUCIBLE_OUTPUT_LIMIT_BYTES = 1 * MiB
    user = make_user(
        quotas={"concurrent_runs": 4, "runs_per_day": 10, "cpu_seconds_per_day": 100, "max_output_bytes": 64 * 1024}
    )
    make_run(user, status=RunStatus.RUNNING)
    make_run(user, status=RunStatus.SUCCEEDED, cpu_seconds=42.25)
    make_run(user, status=RunStatus.ERROR, reason="sandbox_error", cpu_seconds=500.0)  # ours: not counted
    browser = Client()
    browser.force_login(user)

    response = browser.get("/usage/")

    assert response.status_code == 200
    html = response.content.decode()
    concurrent, daily, cpu = row(html, "concurrent_runs"), row(html, "runs_per_day"), row(html, "cpu_seconds_per_day")
    assert '<td class="used">1</td>' in concurrent and "4 runs" in concurrent and 'value="25"' in concurrent
    assert '<td class="used">2</td>' in daily and "10 runs" in daily and 'value="20"' in daily
    assert '<td class="used">42.2</td>' in cpu
    assert "100 CPU s" in cpu and 'value="42"' in cpu
    assert f"{quotas.resets_at():%Y-%m-%d} 00:00 UTC" in html
    assert "64 KiB per stream" in html  # the output cap: the quota, under the site's 1 MiB


def test_the_cpu_time_held_by_runs_in_flight_is_shown(make_user, make_run) -> None:
    user = make_user(quotas={"cpu_seconds_per_day": 100})
    make_run(user, status=RunStatus.RUNNING, wall_seconds=30)
    make_run(user, status=RunStatus.QUEUED, wall_seconds=7.5)
    browser = Client()
    browser.force_login(user)

    html = browser.get("/usage/").content.decode()

    assert re.search(r'id="cpu-reserved">[^<]*hold 37.5 CPU s besides', html)
    assert '<td class="used">0</td>' in row(html, "cpu_seconds_per_day")  # nothing has finished


def test_a_used_up_quota_is_shown_full(make_user, make_run) -> None:
    user = make_user(quotas={"runs_per_day": 1})
    make_run(user, status=RunStatus.SUCCEEDED)
    browser = Client()
    browser.force_login(user)

    html = browser.get("/usage/").content.decode()

    assert row(html, "runs_per_day").startswith("full ")
    assert '<progress class="quota-bar" max="100" value="100"' in row(html, "runs_per_day")


def test_a_quota_without_a_limit_has_no_bar(make_user) -> None:
    user = make_user(quotas=None, is_superuser=True)
    QuotaPolicy.objects.filter(role=Role.ADMIN).update(runs_per_day=None)
    browser = Client()
    browser.force_login(user)

    daily = row(browser.get("/usage/").content.decode(), "runs_per_day")

    assert "no limit" in daily and "<progress" not in daily


def test_the_usage_page_needs_a_login_and_is_linked_in_the_nav(anonymous_client, client) -> None:
    response = anonymous_client.get("/usage/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")

    assert '<a href="/usage/">Usage</a>' in client.get("/runs/").content.decode()
