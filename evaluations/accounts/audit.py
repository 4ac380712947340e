"""The audit log: who did what, when, from where. `audit_record` writes it, inside the transaction
of the change it describes; the action names below are the whole vocabulary; nothing secret is ever
written. Logins and logouts come from Django's auth signals, lockouts from django-axes' (connected
in apps.py).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder

from evaluations.models import AuditEvent

logger = logging.getLogger("crucible.audit")

# Action names. Targets name the object acted on as "<kind>:<id or name>" (e.g. "run:12").
LOGIN = "login"  # actor logged in (page login form or admin login)
LOGIN_FAILED = "login_failed"  # no actor; data {"username": what was typed}
# No actor; target "user:<what was typed>"; data {"username", "failures", "lockout_seconds"}. Once, when
# the lockout begins (evaluations/accounts/login_limits.py); refused attempts while it lasts are
# login_failed events.
LOGIN_LOCKED_OUT = "login_locked_out"
LOGOUT = "logout"
SUBMIT = "submit"  # a submission and its first run; target "run:<id>"
RERUN = "rerun"  # a new run of an existing submission; target "run:<new id>", data {"from_run": id}
CANCEL = "cancel"  # a cancel request (queued → cancelled, or a running run asked to stop)
BATCH_SUBMIT = "batch_submit"  # a batch and its runs; target "batch:<id>", data {"runs", "rerun_of"}
BATCH_CANCEL = "batch_cancel"  # its queued runs cancelled, running ones asked to stop; data {"runs"}
WEBHOOK_CHANGE = "webhook_change"  # a user's default callback URL; target "user:<username>"
WEBHOOK_SECRET = "webhook_secret"  # noqa: S105 - an action name: a user made a new signing secret
# target "token:<id>"; data {"name", "prefix", "user"}, never the key. An admin revoking another
# user's token is the revocation's actor.
TOKEN_CREATE = "token_create"  # noqa: S105 - an action name, not a secret
TOKEN_REVOKE = "token_revoke"  # noqa: S105
ROLE_CHANGE = "role_change"  # target "user:<username>"; data {"from", "to"}
QUOTA_CHANGE = "quota_change"  # target "role:<role>" or "user:<username>"; data {quota: {"from", "to"}}
USER_CREATE = "user_create"  # target "user:<username>"
USER_DEACTIVATE = "user_deactivate"  # target "user:<username>"
USER_CHANGE = "user_change"  # other changes to a user (team, staff, email...); data {field: {"from", "to"}}
SHARE_CHANGE = "share_change"  # target "submission:<id>"; data {"shared_with_team": bool}
# The reconciler's decisions (no actor); target "run:<id>", data {"why"}.
RECONCILE_FINISH = "reconcile_finish"  # stored a result its worker handed over
RECONCILE_LOST = "reconcile_lost"  # ended a run whose worker was lost
RECONCILE_RESEND = "reconcile_resend"  # sent a queued run's lost message again
RECONCILE_WEBHOOK = "reconcile_webhook"  # sent again a webhook try whose message was lost
RECONCILE_ACTIONS = (RECONCILE_FINISH, RECONCILE_LOST, RECONCILE_RESEND, RECONCILE_WEBHOOK)
# One retention pass that deleted something (no actor); target "runs", data {"runs", "archives",
# "bytes", "first_run", "last_run", "ended_before"}: a summary, not one event per run.
RETENTION_EXPIRE = "retention_expire"
PIN_CHANGE = "pin_change"  # an admin pins a submission (retention keeps it); target "submission:<id>", data {"pinned"}

ACTIONS = {
    LOGIN: "logged in",
    LOGIN_FAILED: "failed to log in",
    LOGIN_LOCKED_OUT: "was locked out after failed logins",
    LOGOUT: "logged out",
    SUBMIT: "submitted code",
    RERUN: "re-ran a submission",
    CANCEL: "cancelled a run",
    BATCH_SUBMIT: "submitted a batch",
    BATCH_CANCEL: "cancelled a batch",
    WEBHOOK_CHANGE: "changed their webhook URL",
    WEBHOOK_SECRET: "made a new webhook secret",
    TOKEN_CREATE: "created an API token",
    TOKEN_REVOKE: "revoked an API token",
    ROLE_CHANGE: "changed a role",
    QUOTA_CHANGE: "changed quotas",
    USER_CREATE: "created a user",
    USER_DEACTIVATE: "deactivated a user",
    USER_CHANGE: "changed a user",
    SHARE_CHANGE: "changed sharing",
    RECONCILE_FINISH: "stored a handed-over result",
    RECONCILE_LOST: "ended a run whose worker was lost",
    RECONCILE_RESEND: "re-sent a lost run message",
    RECONCILE_WEBHOOK: "re-sent a lost webhook try",
    RETENTION_EXPIRE: "deleted expired run output",
    PIN_CHANGE: "pinned or unpinned a submission",
}

# Keys whose values are never stored, whatever a caller passes (defence in depth: callers should
# not pass them at all).
_SECRET_KEY = re.compile(r"pass|secret|(^|_)key$|^token$|authorization|cookie|session|csrf", re.IGNORECASE)
REDACTED = "[redacted]"


def client_ip(request) -> str | None:
    """The client's address: REMOTE_ADDR, or — only when CRUCIBLE_TRUSTED_PROXIES says how many
    reverse proxies we sit behind — the address the outermost trusted proxy saw (X-Forwarded-For
    can be sent by anyone, so only the entries our own proxies appended are believed)."""
    if request is None:
        return None
    meta = getattr(request, "META", {})
    hops = settings.CRUCIBLE_TRUSTED_PROXIES
    candidate = meta.get("REMOTE_ADDR")
    if hops > 0:
        forwarded = [part.strip() for part in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= hops:
            candidate = forwarded[-hops]
    return _valid_ip(candidate)


def _valid_ip(value: Any) -> str | None:
    try:
        return str(ipaddress.ip_address(str(value).strip())) if value else None
    except ValueError:
        return None


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): (REDACTED if _SECRET_KEY.search(str(k)) else _scrub(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def audit_record(
    *,
    actor,
    action: str,
    target: str = "",
    request=None,
    ip: str | None = None,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Write one audit event. `actor` may be None (a failed login, the system); the client address
    comes from `ip` if given, else from `request`."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}; add it to evaluations/audit.py")
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None  # AnonymousUser
    # Round-trip through JSON so dates, Decimals and the like are stored as the API would show them.
    clean = json.loads(json.dumps(_scrub(data or {}), cls=DjangoJSONEncoder))
    event = AuditEvent.objects.create(
        actor=actor,
        actor_name=actor.get_username()[:150] if actor is not None else "",
        action=action,
        target=str(target)[:200],
        ip=_valid_ip(ip) or client_ip(request),
        data=clean,
    )
    logger.info(
        "audit %s actor=%s target=%s ip=%s", action, event.actor_name or "-", event.target or "-", event.ip or "-"
    )
    return event


# --- Django auth signals -----------------------------------------------------------------------------


def _on_login(sender, request, user, **kwargs) -> None:
    audit_record(actor=user, action=LOGIN, target=f"user:{user.get_username()}", request=request)


def _on_login_failed(sender, credentials, request=None, **kwargs) -> None:
    # Django has already masked the password in `credentials`; only the username is kept.
    username = str(credentials.get("username", ""))[:150]
    audit_record(
        actor=None, action=LOGIN_FAILED, target=f"user:{username}", request=request, data={"username": username}
    )


def _on_locked_out(sender, request, username=None, ip_address=None, **kwargs) -> None:
    failures = getattr(request, "axes_failures_since_start", None)
    if failures is None:
        return  # an attempt refused while the lockout lasts, not its start
    username = str(username or "")[:150]
    audit_record(
        actor=None,
        action=LOGIN_LOCKED_OUT,
        target=f"user:{username}",
        request=request,
        data={"username": username, "failures": failures, "lockout_seconds": settings.CRUCIBLE_LOGIN_LOCKOUT_SECONDS},
    )


def _on_logout(sender, request, user, **kwargs) -> None:
    if user is not None and user.is_authenticated:
        audit_record(actor=user, action=LOGOUT, target=f"user:{user.get_username()}", request=request)


def connect_signals() -> None:
    from axes.signals import user_locked_out
    from django.contrib.auth import signals

    signals.user_logged_in.connect(_on_login, dispatch_uid="crucible-audit-login")
    signals.user_login_failed.connect(_on_login_failed, dispatch_uid="crucible-audit-login-failed")
    signals.user_logged_out.connect(_on_logout, dispatch_uid="crucible-audit-logout")
    user_locked_out.connect(_on_locked_out, dispatch_uid="crucible-audit-locked-out")
