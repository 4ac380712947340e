"""The admin reads in words: labels with their units, a run's sizes in MiB with a link to its live
page, and the audit log with each change's old and new value, filterable by who made it."""

from __future__ import annotations

from evaluations.accounts import services as account_services
from evaluations.models import Role


def test_quota_and_token_labels_read_as_words(admin_client) -> None:
    index = admin_client.get("/admin/").content.decode()
    policies = admin_client.get("/admin/evaluations/quotapolicy/").content.decode()

    assert "API tokens" in index
    assert "CPU seconds per day" in policies and "Most memory per run (MiB)" in policies


def test_a_runs_admin_page_links_to_its_live_page_and_gives_sizes_in_mib(admin_client, user, make_run) -> None:
    run = make_run(user, status="succeeded", peak_memory_bytes=84295680)

    html = admin_client.get(f"/admin/evaluations/run/{run.pk}/change/").content.decode()

    assert f'<a href="/runs/{run.pk}/">Run #{run.pk} as its owner sees it, live</a>' in html
    assert "80.4 MiB (84295680 bytes)" in html and "256 MiB" in html


def test_the_audit_log_shows_a_role_change_from_and_to_and_filters_by_actor(admin_client, make_user) -> None:
    boss, other = make_user("boss"), make_user("other-admin")
    target = make_user("ada")
    account_services.user_set_role(actor=boss, user=target, role=Role.REVIEWER)
    account_services.user_set_role(actor=other, user=target, role=Role.ADMIN)

    everyone = admin_client.get("/admin/evaluations/auditevent/").content.decode()
    by_boss = admin_client.get("/admin/evaluations/auditevent/?actor_name=boss").content.decode()

    assert "researcher → reviewer" in everyone and "reviewer → admin" in everyone
    assert "researcher → reviewer" in by_boss and "reviewer → admin" not in by_boss
    assert "?actor_name=boss" in everyone  # the filter offers each actor
