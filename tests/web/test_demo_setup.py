from io import StringIO

import pytest
from django.core.management import call_command

from biovlm_web.core.models import Project
from biovlm_web.uploads.models import DataFile


@pytest.mark.django_db
def test_demo_setup_creates_account_and_samples(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    first = StringIO()
    call_command("demo_setup", "--skip-analyses", stdout=first)
    second = StringIO()
    call_command("demo_setup", "--skip-analyses", stdout=second)

    password = (tmp_path / "demo_credentials").read_text().strip()
    assert f"with password {password!r}" in second.getvalue()
    assert "Added 6 sample files" in first.getvalue()
    assert "sample files" not in second.getvalue()
    assert Project.objects.filter(name="Demo lab").count() == 1
    kinds = sorted(DataFile.objects.values_list("kind", flat=True))
    assert kinds == ["image", "image", "image", "image", "video", "volume"]
    volume = DataFile.objects.get(kind="volume")
    assert volume.metadata["shape"] == [64, 64, 64]
    assert volume.metadata["voxel_size_angstrom"]["x"] == pytest.approx(10.0)
    video = DataFile.objects.get(kind="video")
    assert video.metadata["frame_count"] == 24
    assert video.file.storage.exists(video.file.name)

    from django.test import Client

    client = Client()
    assert client.login(username="demo", password=password)
