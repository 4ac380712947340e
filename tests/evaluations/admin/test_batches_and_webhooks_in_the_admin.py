"""Batches and webhook deliveries in the admin: readable by admins, changed by nobody there, and a
delivery's URL shown only as its scheme and host."""

from __future__ import annotations

from django.utils import timezone

from evaluations.models import Batch, WebhookDelivery


def test_admins_read_batches_and_deliveries_without_the_callbacks_path(admin_client, make_user, make_run) -> None:
    owner = make_user()
    run = make_run(owner)
    batch = Batch.objects.create(
        owner=owner, submission=run.submission, name="sweep", configs=[], callback_url="https://h.example.org/s3cr3t"
    )
    delivery = WebhookDelivery.objects.create(
        run=run, attempt=1, url="https://hooks.example.org/s3cr3t", at=timezone.now(), status_code=500
    )

    pages = [
        admin_client.get("/admin/evaluations/batch/"),
        admin_client.get(f"/admin/evaluations/batch/{batch.pk}/change/"),
        admin_client.get("/admin/evaluations/webhookdelivery/"),
        admin_client.get(f"/admin/evaluations/webhookdelivery/{delivery.pk}/change/"),
    ]

    assert [page.status_code for page in pages] == [200, 200, 200, 200]
    assert "sweep" in pages[0].content.decode()
    assert all("s3cr3t" not in page.content.decode() for page in pages)
    assert "hooks.example.org/…" in pages[2].content.decode()
    assert admin_client.post(f"/admin/evaluations/batch/{batch.pk}/delete/").status_code == 403
