"""Fixtures for the security tests: one stored world per module and a client per persona.

The world is stored once per module, outside any test's transaction; each test runs in a
transaction that is rolled back, so what a test changes in the database is undone.
"""

import shutil
import tempfile
from pathlib import Path

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from tests.security.world import build_world, delete_world

PERSONAS = ("owner", "member", "stranger", "anonymous", "share")


@pytest.fixture(scope="module")
def world_media(tmp_path_factory):
    return tmp_path_factory.mktemp("world-media")


@pytest.fixture
def _media_root(settings, world_media):
    """Replace the suite's per-test media directory with the world's, where its files are stored."""
    settings.MEDIA_ROOT = world_media


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, world_media):
    import django_rq

    directory = Path(tempfile.mkdtemp(prefix="biovlm-world-"))
    with django_db_blocker.unblock(), override_settings(MEDIA_ROOT=world_media):
        django_rq.get_connection("default").flushdb()
        stored = build_world(directory)
        try:
            yield stored
        finally:
            delete_world(stored)
            django_rq.get_connection("default").flushdb()
            shutil.rmtree(directory, ignore_errors=True)


def persona_client(world, persona: str) -> APIClient:
    """Return a new API client for ``persona``; the share visitor has opened every share link of the world.

    Each test gets its own client, so a test that signs out changes no other test.
    """
    client = APIClient()
    if persona in ("owner", "member", "stranger", "admin"):
        client.force_login(world[persona])
    elif persona == "share":
        for link in world["share_links"].values():
            response = client.get(f"/s/{link.token}/")
            assert response.status_code == 302, response.content[:300]
    return client
