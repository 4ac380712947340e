"""Security headers on every response (a Content-Security-Policy with no inline code, nosniff, a
Referrer-Policy), pages that need no inline code, and the settings for running behind a TLS proxy."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from evaluations.accounts import services as account_services
from evaluations.models import Role

REPO_ROOT = Path(__file__).resolve().parents[2]


def csp_directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    return {name: values for name, *values in (part.split() for part in policy.split(";") if part.strip())}


@pytest.mark.parametrize(
    "path",
    ["/login/", "/static/js/run_detail.js", "/no/such/page/", "/api/v1/runs/", "/ws/runs/1/"],
)
def test_every_response_carries_the_security_headers(db, path) -> None:
    response = Client().get(path)

    directives = csp_directives(response)
    assert directives["script-src"] == ["'self'"]
    assert directives["style-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"] and directives["frame-ancestors"] == ["'none'"]
    assert not [d for d, values in directives.items() if "'unsafe-inline'" in values or "'unsafe-eval'" in values]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


def test_the_pages_of_a_logged_in_user_carry_the_policy(make_user) -> None:
    user = make_user("pages")
    account_services.user_set_role(actor=None, user=user, role=Role.ADMIN)
    browser = Client()
    browser.force_login(user)
    for path in ["/", "/submit/", "/usage/", "/profile/", "/ops/", "/admin/"]:
        response = browser.get(path, follow=True)
        assert response.status_code == 200, path
        assert "script-src 'self'" in response["Content-Security-Policy"], path


# The policy forbids inline code, so none may be written: <script> without src, style attributes,
# <style> blocks, on* handlers and javascript: URLs in any template.
INLINE_CODE = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle=|\son[a-z]+=|javascript:", re.IGNORECASE)


def test_no_template_has_inline_scripts_styles_or_handlers() -> None:
    found = [
        f"{path.relative_to(REPO_ROOT)}: {match.group()}"
        for path in sorted((REPO_ROOT / "templates").rglob("*.html"))
        for match in INLINE_CODE.finditer(path.read_text())
    ]
    assert found == []


# -- behind a TLS proxy --------------------------------------------------------------------------


def settings_with(env: dict[str, str], tmp_path: Path) -> dict:
    """The settings a process started with `env` reads (a fresh interpreter: settings are read once)."""
    names = ["SECURE_PROXY_SSL_HEADER", "SECURE_HSTS_SECONDS", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"]
    code = (
        "import json, django; from django.conf import settings; django.setup(); "
        f"print(json.dumps({{n: getattr(settings, n, None) for n in {names!r}}}))"
    )
    full_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "crucible_site.settings", "CRUCIBLE_VAR_DIR": str(tmp_path)}
    full_env.pop("CRUCIBLE_PRODUCTION", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env={**full_env, **env}, cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_behind_a_tls_proxy_https_is_trusted_hsts_sent_and_cookies_secure(tmp_path) -> None:
    proxied = settings_with({"CRUCIBLE_BEHIND_TLS_PROXY": "1"}, tmp_path)
    assert proxied["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert proxied["SECURE_HSTS_SECONDS"] >= 180 * 24 * 3600
    assert proxied["SESSION_COOKIE_SECURE"] and proxied["CSRF_COOKIE_SECURE"]

    plain = settings_with({"CRUCIBLE_BEHIND_TLS_PROXY": "0"}, tmp_path)
    assert plain["SECURE_PROXY_SSL_HEADER"] is None and not plain["SECURE_HSTS_SECONDS"]
    assert not plain["SESSION_COOKIE_SECURE"]  # `make run` serves http: a secure cookie would never come back


def test_a_request_the_proxy_marks_https_gets_hsts(db, settings) -> None:
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 3600

    assert Client().get("/login/", HTTP_X_FORWARDED_PROTO="https")["Strict-Transport-Security"] == "max-age=3600"
    assert "Strict-Transport-Security" not in Client().get("/login/")


@pytest.mark.parametrize("forwarded_proto", [{"HTTP_X_FORWARDED_PROTO": "https"}, {}])
def test_invitation_links_are_https_behind_a_tls_proxy(make_user, settings, forwarded_proto) -> None:
    settings.CRUCIBLE_BEHIND_TLS_PROXY = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    admin = make_user("tls-admin")
    account_services.user_set_role(actor=None, user=admin, role=Role.ADMIN)
    forgetful = make_user("tls-forgetful")
    browser = Client(HTTP_HOST="testserver", **forwarded_proto)  # a proxy passes the Host on
    browser.force_login(admin)

    response = browser.post(
        "/admin/auth/user/", {"action": "make_set_password_links", "_selected_action": [forgetful.pk]}, follow=True
    )

    assert re.search(r"https://testserver/set-password/[^\s<\"]+/", response.content.decode())
    assert "http://testserver/set-password/" not in response.content.decode()
