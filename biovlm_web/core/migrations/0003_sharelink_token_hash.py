import hashlib

from django.db import migrations, models


def fill_token_hashes(apps, schema_editor):
    ShareLink = apps.get_model("core", "ShareLink")
    for link in ShareLink.objects.only("pk", "token").iterator():
        digest = hashlib.sha256(link.token.encode("utf-8", "surrogatepass")).hexdigest()
        ShareLink.objects.filter(pk=link.pk).update(token_hash=digest)


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0002_platform_jobs"),
    ]

    operations = [
        migrations.AddField(
            model_name="sharelink",
            name="token_hash",
            field=models.CharField(editable=False, max_length=64, null=True),
        ),
        migrations.RunPython(fill_token_hashes, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="sharelink",
            name="token_hash",
            field=models.CharField(editable=False, max_length=64, unique=True),
        ),
    ]
