"""Access changes made outside the services still reach open websockets (connected in apps.py)."""

from __future__ import annotations

from django.db import transaction

from evaluations.live import publisher


def connect_access_signals() -> None:
    """Changes made outside the services (the admin's password form, `set_password` anywhere, a
    user deleted in the admin) also reach open websockets: a changed password hash ends the user's
    other sessions (websocket_user checks it), a deleted user ends everything they had open."""
    from django.contrib.auth import get_user_model
    from django.db.models import signals

    user_model = get_user_model()
    signals.pre_save.connect(_note_password_change, sender=user_model, dispatch_uid="crucible-access-password")
    signals.post_save.connect(_on_user_saved, sender=user_model, dispatch_uid="crucible-access-user-saved")
    signals.post_delete.connect(_on_user_deleted, sender=user_model, dispatch_uid="crucible-access-user-deleted")


def _note_password_change(sender, instance, update_fields=None, **kwargs) -> None:
    if instance.pk is None or (update_fields is not None and "password" not in update_fields):
        return  # a new user has no sockets; e.g. last_login updates name their fields
    stored = sender._default_manager.filter(pk=instance.pk).values_list("password", flat=True).first()
    instance._crucible_password_changed = stored is not None and stored != instance.password


def _on_user_saved(sender, instance, **kwargs) -> None:
    if instance.__dict__.pop("_crucible_password_changed", False):
        transaction.on_commit(publisher.access_changed)


def _on_user_deleted(sender, instance, **kwargs) -> None:
    transaction.on_commit(publisher.access_changed)
