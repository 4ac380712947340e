"""Failed logins lock out (evaluations/accounts/login_limits.py): per username and per client address,
on the login page and the admin's, for a set time, audited, with one message whether or not the user
exists, counted in Redis where every web process sees them.

Measured before the lockout existed: 50 wrong passwords in a row were all answered 200, and the right
password then logged in. Every test uses client addresses of its own (TEST-NET ranges)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

from django.test import Client

from evaluations.accounts import audit
from evaluations.models import AuditEvent

ADDRESS = "198.51.100.10"


def login(username: str, password: str, *, ip: str = ADDRESS, path: str = "/login/") -> tuple[int, Client]:
    browser = Client(REMOTE_ADDR=ip)
    response = browser.post(path, {"username": username, "password": password})
    return response.status_code, browser


def page(response, username: str) -> str:
    """The page without what differs by design: the username typed (the form shows it again) and the
    CSRF token."""
    text = response.content.decode().replace(username, "USERNAME")
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", text)


def logged_in(browser: Client) -> bool:
    return browser.get("/runs/").status_code == 200


def test_fifty_wrong_passwords_lock_the_user_out_and_then_the_right_one_is_refused(settings, user, password) -> None:
    limit = settings.CRUCIBLE_LOGIN_FAILURE_LIMIT  # the default (10)

    statuses = [login(user.username, f"guess {i}")[0] for i in range(50)]

    # Before: 50 × 200. Now the failure that reaches the limit and all after it are refused.
    assert statuses == [200] * (limit - 1) + [429] * (50 - limit + 1)
    status, browser = login(user.username, password)
    assert status == 429
    assert not logged_in(browser)


def test_the_lockout_ends_after_its_time(settings, user, password) -> None:
    settings.CRUCIBLE_LOGIN_FAILURE_LIMIT = 3
    settings.CRUCIBLE_LOGIN_LOCKOUT_SECONDS = 2
    assert [login(user.username, "wrong")[0] for _ in range(3)] == [200, 200, 429]
    assert login(user.username, password)[0] == 429

    time.sleep(2.5)

    status, browser = login(user.username, password)
    assert status == 302
    assert logged_in(browser)


def test_a_locked_out_login_says_so_with_retry_after_and_the_same_words_for_any_username(
    settings, user, password
) -> None:
    settings.CRUCIBLE_LOGIN_FAILURE_LIMIT = 2
    settings.CRUCIBLE_LOGIN_LOCKOUT_SECONDS = 600
    pages = {}
    for username, ip in ((user.username, "198.51.100.21"), ("nobody-by-this-name", "198.51.100.22")):
        wrong = [Client(REMOTE_ADDR=ip).post("/login/", {"username": username, "password": "x"}) for _ in range(3)]
        assert [r.status_code for r in wrong] == [200, 429, 429]
        pages[username] = tuple(page(r, username) for r in (wrong[0], wrong[2])) + (wrong[2]["Retry-After"],)

    # Whether the user exists or not, a wrong password and a lockout read the same.
    assert pages[user.username] == pages["nobody-by-this-name"]
    text = pages[user.username][1]
    assert "Too many failed logins for this username or from this address" in text
    assert "refused for 10 minutes" in text
    assert pages[user.username][2] == "600"


def test_failures_from_one_address_lock_out_every_username_tried_from_it(settings, make_user, password) -> None:
    settings.CRUCIBLE_LOGIN_FAILURE_LIMIT = 3
    bob = make_user("bob")
    ip = "198.51.100.30"

    assert [login(f"someone{i}", "wrong", ip=ip)[0] for i in range(3)] == [200, 200, 429]

    assert login(bob.username, password, ip=ip)[0] == 429
    assert login(bob.username, password, ip="198.51.100.31")[0] == 302  # from elsewhere: fine


def test_failures_for_one_username_lock_it_out_from_every_address(settings, user, password) -> None:
    settings.CRUCIBLE_LOGIN_FAILURE_LIMIT = 3

    statuses = [login(user.username, "wrong", ip=f"203.0.113.{i}")[0] for i in range(1, 4)]

    assert statuses == [200, 200, 429]
    assert login(user.username, password, ip="203.0.113.99")[0] == 429


def test_the_admin_login_is_locked_out_too_and_shares_the_count(settings, make_user, password) -> None:
    from evaluations.accounts import services as account_services
    from evaluations.models import Role

    settings.CRUCIBLE_LOGIN_FAILURE_LIMIT = 3
    admin = make_user("root", is_staff=True)
    account_services.user_set_role(actor=None, user=admin, role=Role.ADMIN)

    assert login(admin.username, "wrong", path="/admin/login/")[0] == 200
    assert login(admin.username, "wrong")[0] == 200
    assert login(admin.username, "wrong", path="/admin/login/")[0] == 429

    status, browser = login(admin.username, password, path="/admin/login/", ip="198.51.100.40")
    assert status == 429
    assert browser.get("/admin/").status_code == 302  # still sent to log in


def test_a_lockout_is_audited_once_with_the_username_and_address(settings, user) -> None:
    settings.CRUCIBLE_LOGIN_FAILURE_LIMIT = 2
    settings.CRUCIBLE_LOGIN_LOCKOUT_SECONDS = 300

    for _ in range(5):
        login(user.username, "wrong")

    [event] = AuditEvent.objects.filter(action=audit.LOGIN_LOCKED_OUT)
    assert event.actor is None and event.ip == ADDRESS
    assert event.target == f"user:{user.username}"
    assert event.data == {"username": user.username, "failures": 2, "lockout_seconds": 300}
    # Every attempt, refused or not, is a failed login of its own.
    assert AuditEvent.objects.filter(action=audit.LOGIN_FAILED).count() == 5


def test_the_counts_live_in_redis_where_another_process_sees_the_lockout(settings, user) -> None:
    settings.CRUCIBLE_LOGIN_FAILURE_LIMIT = 3
    for _ in range(3):
        login(user.username, "wrong")

    # Another web process: same Redis, same settings, nothing shared in memory with this one.
    check = (
        "import django; django.setup()\n"
        "from django.test import RequestFactory\n"
        "from axes.handlers.proxy import AxesProxyHandler\n"
        "for name, ip in (('alice', '192.0.2.1'), ('carol', '198.51.100.10'), ('carol', '192.0.2.1')):\n"
        "    request = RequestFactory().post('/login/', {'username': name}, REMOTE_ADDR=ip)\n"
        "    print(name, ip, AxesProxyHandler.is_locked(request, {'username': name}))\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "crucible_site.test_settings",
        "CRUCIBLE_REDIS_URL": settings.REDIS_URL,
        "CRUCIBLE_CACHE_PREFIX": settings.CACHES["default"]["KEY_PREFIX"],
        "CRUCIBLE_LOGIN_FAILURE_LIMIT": "3",
    }
    out = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=60)

    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "alice 192.0.2.1 True",  # the username, from anywhere
        "carol 198.51.100.10 True",  # anyone, from the address
        "carol 192.0.2.1 False",
    ]
