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
