"""Profiles that a superuser's first submission made with the default role (researcher) say admin,
the role the superuser has: the user admin showed the row's role and saved it back, demoting them."""

from django.db import migrations


def superuser_rows_say_admin(apps, schema_editor):
    Profile = apps.get_model("evaluations", "Profile")
    Profile.objects.filter(user__is_superuser=True).exclude(role="admin").update(role="admin")


class Migration(migrations.Migration):
    dependencies = [("evaluations", "0004_accounts")]

    operations = [migrations.RunPython(superuser_rows_say_admin, migrations.RunPython.noop)]
