"""Permission matrix: every core endpoint and page for every persona.

Personas: the project owner, a project member, a stranger (signed in, other project), an
anonymous visitor, and anonymous visitors who opened a share link that is valid, that
expired after they opened it, or that was revoked after they opened it.
"""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from biovlm_web.core.jobs import submit_job
from biovlm_web.core.models import ShareLink

PERSONAS = ["owner", "member", "stranger", "anonymous", "share_valid", "share_expired", "share_revoked"]
ANON = ["anonymous", "share_valid", "share_expired", "share_revoked"]


@pytest.fixture
def world(personas, redis_conn):
    project = personas["project"]
    job = submit_job(project, "test_steps", {"steps": 1}, user=personas["owner"])
    clients = {}
    for name in ("owner", "member", "stranger"):
        client = APIClient()
        client.force_login(personas[name])
        clients[name] = client
    clients["anonymous"] = APIClient()

    links = {}
    for name in ("share_valid", "share_expired", "share_revoked"):
        link = ShareLink.objects.create(project=project, target=job, created_by=personas["owner"], label=name)
        client = APIClient()
        assert client.get(f"/s/{link.token}/").status_code == 302
        clients[name] = client
        links[name] = link
    ShareLink.objects.filter(pk=links["share_expired"].pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    ShareLink.objects.filter(pk=links["share_revoked"].pk).update(revoked_at=timezone.now())
    return {"job": job, "project": project, "clients": clients, "links": links, **personas}


def expect(default, **overrides):
    return {persona: overrides.get(persona, default) for persona in PERSONAS}


# (method, path template, body, expected status per persona)
API_MATRIX = [
    ("get", "/api/projects/{project}/", None, expect(404, owner=200, member=200, **dict.fromkeys(ANON, 401))),
    ("patch", "/api/projects/{project}/", {"description": "x"}, expect(404, owner=200, member=403, **dict.fromkeys(ANON, 401))),
    ("get", "/api/projects/{project}/members/", None, expect(404, owner=200, member=200, **dict.fromkeys(ANON, 401))),
    ("post", "/api/projects/{project}/members/", {"username": "stranger"}, expect(404, owner=201, member=403, **dict.fromkeys(ANON, 401))),
    ("delete", "/api/projects/{project}/members/member/", None, expect(404, owner=204, member=403, **dict.fromkeys(ANON, 401))),
    ("get", "/api/jobs/{job}/", None, expect(404, owner=200, member=200, share_valid=200)),
    ("post", "/api/jobs/{job}/cancel/", None, expect(404, owner=200, member=200, **dict.fromkeys(ANON, 401))),
    ("post", "/api/jobs/{job}/retry/", None, expect(404, owner=409, member=409, **dict.fromkeys(ANON, 401))),
    ("post", "/api/jobs/", {"project": "{project}", "kind": "test_steps", "params": {}}, expect(400, owner=201, member=201, **dict.fromkeys(ANON, 401))),
    ("get", "/api/share-links/{link}/", None, expect(404, owner=200, member=200, **dict.fromkeys(ANON, 401))),
    ("post", "/api/share-links/{link}/revoke/", None, expect(404, owner=200, member=200, **dict.fromkeys(ANON, 401))),
    ("post", "/api/share-links/", {"target_type": "job", "target_uuid": "{job}"}, expect(404, owner=201, member=201, **dict.fromkeys(ANON, 401))),
]  # fmt: skip

PAGE_MATRIX = [
    ("get", "/projects/{project}/", expect(404, owner=200, member=200, **dict.fromkeys(ANON, 302))),
    ("get", "/jobs/{job}/", expect(404, owner=200, member=200, share_valid=200, **dict.fromkeys(["anonymous", "share_expired", "share_revoked"], 302))),
    ("post", "/jobs/{job}/cancel/", expect(404, owner=302, member=302, **dict.fromkeys(ANON, 302))),
    ("post", "/share/new/job/{job}/", expect(404, owner=302, member=302, **dict.fromkeys(ANON, 302))),
    ("post", "/share/{link}/revoke/", expect(404, owner=302, member=302, **dict.fromkeys(ANON, 302))),
    ("post", "/projects/{project}/members/", expect(404, owner=302, member=403, **dict.fromkeys(ANON, 302))),
]  # fmt: skip


def fill(template, world):
    values = {"project": world["project"].uuid, "job": world["job"].uuid, "link": world["links"]["share_valid"].uuid}
    if isinstance(template, dict):
        return {key: fill(value, world) for key, value in template.items()}
    if isinstance(template, str):
        return template.format(**values)
    return template


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize(("method", "path", "body", "expected"), API_MATRIX, ids=[f"{m} {p}" for m, p, _, _ in API_MATRIX])
def test_api_matrix(world, persona, method, path, body, expected):
    client = world["clients"][persona]
    response = getattr(client, method)(fill(path, world), fill(body, world), format="json")
    assert response.status_code == expected[persona], response.content[:300]


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize(("method", "path", "expected"), PAGE_MATRIX, ids=[f"{m} {p}" for m, p, _ in PAGE_MATRIX])
def test_page_matrix(world, persona, method, path, expected):
    client = world["clients"][persona]
    response = getattr(client, method)(fill(path, world), {"username": "stranger"} if "members" in path else {})
    assert response.status_code == expected[persona], response.content[:300]


def test_lists_show_only_own_project(world):
    for persona in ("owner", "member"):
        client = world["clients"][persona]
        assert [p["uuid"] for p in client.get("/api/projects/").json()["results"]] == [str(world["project"].uuid)]
        assert [j["uuid"] for j in client.get("/api/jobs/").json()["results"]] == [str(world["job"].uuid)]
        assert len(client.get("/api/share-links/").json()["results"]) == 3
    stranger = world["clients"]["stranger"]
    assert [p["uuid"] for p in stranger.get("/api/projects/").json()["results"]] == [str(world["other_project"].uuid)]
    assert stranger.get("/api/jobs/").json()["results"] == []
    assert stranger.get("/api/share-links/").json()["results"] == []
    for persona in ANON:
        for path in ("/api/projects/", "/api/jobs/", "/api/share-links/"):
            assert world["clients"][persona].get(path).status_code == 401


def test_share_visitor_sees_nothing_else(world, personas):
    other_job = submit_job(world["project"], "test_steps", {"steps": 1}, user=personas["owner"])
    client = world["clients"]["share_valid"]
    assert client.get(f"/api/jobs/{other_job.uuid}/").status_code == 404
    assert client.get(f"/jobs/{other_job.uuid}/").status_code == 302
    assert client.get(f"/projects/{world['project'].uuid}/").status_code == 302
    page = client.get(f"/jobs/{world['job'].uuid}/").content.decode()
    assert "read-only" in page
    assert "Create share link" not in page
    assert world["links"]["share_valid"].token not in page.replace(f"/s/{world['links']['share_valid'].token}", "")


def test_share_token_header_opens_api(world):
    token = world["links"]["share_valid"].token
    response = APIClient().get(f"/api/jobs/{world['job'].uuid}/", HTTP_X_SHARE_TOKEN=token)
    assert response.status_code == 200
    revoked = world["links"]["share_revoked"].token
    assert APIClient().get(f"/api/jobs/{world['job'].uuid}/", HTTP_X_SHARE_TOKEN=revoked).status_code == 404


@pytest.mark.parametrize(("link_name", "status", "text"), [
    ("share_expired", 410, "This share link has expired"),
    ("share_revoked", 410, "This share link was revoked"),
])  # fmt: skip
def test_dead_share_link_page(world, link_name, status, text):
    response = Client().get(f"/s/{world['links'][link_name].token}/")
    assert response.status_code == status
    assert text in response.content.decode()


@pytest.mark.django_db
def test_unknown_share_link_page():
    response = Client().get("/s/not-a-real-token/")
    assert response.status_code == 404
    assert "Share link not found" in response.content.decode()


def test_share_tokens_are_unguessable(world):
    tokens = {link.token for link in world["links"].values()}
    assert len(tokens) == 3
    assert all(len(token) >= 43 for token in tokens)


def test_hidden_page_gets_styled_not_found(world):
    response = world["clients"]["stranger"].get(f"/projects/{world['project'].uuid}/")
    assert response.status_code == 404
    page = response.content.decode()
    assert "belongs to a project you are not a member of" in page
    assert 'href="/"' in page


def test_adding_existing_member_says_so(world):
    response = world["clients"]["owner"].post(
        f"/projects/{world['project'].uuid}/members/", {"username": "member"}, follow=True
    )
    assert "member is already a member of this project." in response.content.decode()
