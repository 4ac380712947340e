"""The exit codes of `crucible`, defined once (client/README.md has the table).

A followed run that ended by its own exit passes that code on (0 when it succeeded); every other
reason a run ends has a code of its own, above what programs usually use and below the signals'
128+N. Failures of the command itself (before or around a run) use small codes.
"""

from __future__ import annotations

from crucible import errors

OK = 0
USAGE = 2  # bad arguments, a file that cannot be sent, or a request the server refused (400/413/422)
NOT_CONFIGURED = 3  # no URL/token, or the token was refused (401/403)
NOT_FOUND = 4  # no such run (404), or its output expired (410)
REFUSED = 5  # over a quota or the rate limit (429)
CONFLICT = 6  # e.g. cancelling a run that has already ended (409)
UNAVAILABLE = 7  # the server cannot be reached or answers 5xx; the live connection was lost for good
BATCH_NOT_ALL_SUCCEEDED = 8  # a followed batch ended with runs that did not succeed
INTERRUPTED = 130  # Ctrl-C while following: the run goes on

BY_REASON = {
    "cancelled": 110,
    "timeout": 111,
    "memory_limit": 112,
    "output_limit": 113,
    "pids_limit": 114,
    "disk_limit": 115,
    "rejected": 116,
    "worker_lost": 117,
    "sandbox_error": 118,
    "storage_error": 119,
}
UNKNOWN_REASON = 120  # a reason this client does not know yet (a newer server)
FAILED_WITHOUT_CODE = 1  # `failed` by exit_code, but no code recorded (e.g. killed by a signal)


def for_run(status: str, reason: str | None, exit_code: int | None) -> int:
    """The exit code for a terminal run."""
    if status == "succeeded":
        return OK
    if reason in (None, "exit_code") and status == "failed":
        if exit_code is None:
            return FAILED_WITHOUT_CODE
        code = exit_code if exit_code >= 0 else 128 - exit_code  # killed by signal N: 128+N, as shells do
        return code % 256 or FAILED_WITHOUT_CODE  # a failure never exits 0
    if reason is None:
        return UNKNOWN_REASON
    return BY_REASON.get(reason, UNKNOWN_REASON)


def for_error(exc: errors.CrucibleError) -> int:
    if isinstance(exc, errors.ConfigError | errors.Unauthorized):
        return NOT_CONFIGURED
    if isinstance(exc, errors.NotFound | errors.Gone):
        return NOT_FOUND
    if isinstance(exc, errors.RateLimited):
        return REFUSED
    if isinstance(exc, errors.Conflict):
        return CONFLICT
    if isinstance(exc, errors.LiveRefused):
        return {4401: NOT_CONFIGURED, 401: NOT_CONFIGURED, 4403: NOT_CONFIGURED, 403: NOT_CONFIGURED}.get(
            exc.code, NOT_FOUND if exc.code in (4404, 404) else USAGE
        )
    if isinstance(exc, errors.InvalidRequest):
        return USAGE
    return UNAVAILABLE
