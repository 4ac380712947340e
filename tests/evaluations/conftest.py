import pytest


@pytest.fixture(autouse=True)
def logs_in_a_temporary_dir(settings, tmp_path):
    """Each test's run output goes to its own log store, not var/logs."""
    settings.STORAGES = {
        **settings.STORAGES,
        "logs": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "logs")},
        },
    }


@pytest.fixture(autouse=True)
def no_rate_limits(settings):
    """API rate limits are off unless a test turns them on (tests/evaluations/test_rate_limiting.py):
    counts kept in the shared Redis must not throttle unrelated tests."""
    settings.CRUCIBLE_API_RATE = None
    settings.CRUCIBLE_API_WRITE_RATE = None
