import pytest


@pytest.fixture
def admin_client(make_user):
    """A browser logged in as a user with the admin role."""
    from django.test import Client

    from evaluations.accounts import services as account_services
    from evaluations.models import Role

    admin = make_user("role-admin")
    account_services.user_set_role(actor=None, user=admin, role=Role.ADMIN)
    client = Client()
    client.force_login(admin)
    return client
