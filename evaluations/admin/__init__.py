"""The Django admin for the admin role: each module registers one domain's models."""

from evaluations.admin import batches, quotas, runs, teams, tokens, users  # noqa: F401 - registers the ModelAdmins
