"""Share tokens: unguessable, looked up by digest, rate-limited on failures, read-only, revocable, expiring."""

import base64
import hashlib
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from biovlm_web.core.jobs import submit_job
from biovlm_web.core.models import ShareLink, new_share_token


@pytest.fixture
def link(personas, redis_conn):
    job = submit_job(personas["project"], "test_steps", {"steps": 1}, user=personas["owner"])
    return ShareLink.objects.create(project=personas["project"], target=job, created_by=personas["owner"])


@pytest.fixture
def low_limit(settings):
    settings.SHARE_TOKEN_MAX_FAILURES = 3
    settings.SHARE_TOKEN_FAILURE_WINDOW = 60
    return settings


def test_tokens_carry_256_random_bits():
    tokens = [new_share_token() for _ in range(200)]
    assert len(set(tokens)) == len(tokens)
    for token in tokens:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        assert len(raw) * 8 >= 128
        assert len(raw) == 32


def test_lookup_compares_digests_only(link):
    assert link.token_hash == hashlib.sha256(link.token.encode()).hexdigest()
    with CaptureQueriesContext(connection) as queries:
        found = ShareLink.objects.with_tokens([link.token])
    assert found == [link]
    sql = " ".join(query["sql"] for query in queries.captured_queries)
    assert link.token_hash in sql
    assert link.token not in sql


def test_lookup_rejects_near_miss(link):
    near_miss = link.token[:-1] + ("A" if link.token[-1] != "A" else "B")
    assert ShareLink.objects.with_tokens([near_miss]) == []
    assert ShareLink.objects.with_tokens(["", link.token]) == [link]


def test_unknown_tokens_rate_limited_per_ip(link, low_limit):
    client = APIClient(REMOTE_ADDR="198.51.100.7")
    for attempt in range(3):
        assert client.get(f"/s/guess-{attempt}/").status_code == 404
    blocked = client.get("/s/guess-4/")
    assert blocked.status_code == 429
    assert 1 <= int(blocked["Retry-After"]) <= 60
    assert "Too many unknown share links" in blocked.content.decode()
    # Once blocked, even the right token waits, so a guess that happens to hit is not confirmed.
    assert client.get(f"/s/{link.token}/").status_code == 429
    other_address = APIClient(REMOTE_ADDR="198.51.100.8")
    assert other_address.get(f"/s/{link.token}/").status_code == 302


def test_unknown_header_tokens_rate_limited(link, low_limit):
    client = APIClient(REMOTE_ADDR="198.51.100.9")
    path = f"/api/jobs/{link.target.uuid}/"
    for attempt in range(3):
        assert client.get(path, HTTP_X_SHARE_TOKEN=f"guess-{attempt}").status_code == 404
    blocked = client.get(path, HTTP_X_SHARE_TOKEN="guess-4")
    assert blocked.status_code == 429
    assert int(blocked["Retry-After"]) >= 1
    assert "Too many unknown share links" in blocked.json()["detail"]
    assert client.get(path).status_code == 404  # requests without a token are not affected


def test_known_but_dead_tokens_not_counted(link, low_limit):
    ShareLink.objects.filter(pk=link.pk).update(revoked_at=timezone.now())
    client = APIClient(REMOTE_ADDR="198.51.100.10")
    for _ in range(5):
        assert client.get(f"/s/{link.token}/").status_code == 410


def test_limit_resets_after_window(link, low_limit, redis_conn):
    client = APIClient(REMOTE_ADDR="198.51.100.11")
    for attempt in range(4):
        client.get(f"/s/guess-{attempt}/")
    assert client.get(f"/s/{link.token}/").status_code == 429
    key = "biovlm:share-token-failures:198.51.100.11"
    assert 0 < redis_conn.ttl(key) <= 60
    redis_conn.expire(key, 0)
    assert client.get(f"/s/{link.token}/").status_code == 302


def test_header_token_is_read_only(link, personas):
    client = APIClient()
    job = link.target
    headers = {"HTTP_X_SHARE_TOKEN": link.token}
    assert client.get(f"/api/jobs/{job.uuid}/", **headers).status_code == 200
    assert client.post(f"/api/jobs/{job.uuid}/cancel/", **headers).status_code == 401
    assert client.post(f"/api/jobs/{job.uuid}/retry/", **headers).status_code == 401
    assert client.post(f"/api/share-links/{link.uuid}/revoke/", **headers).status_code == 401
    assert client.get(f"/api/projects/{personas['project'].uuid}/", **headers).status_code == 401
    job.refresh_from_db()
    assert not job.cancel_requested


@pytest.mark.parametrize("change", ["revoked", "expired"])
def test_dead_token_closes_open_session(link, change):
    client = APIClient()
    assert client.get(f"/s/{link.token}/").status_code == 302
    page = f"/jobs/{link.target.uuid}/"
    assert client.get(page).status_code == 200
    if change == "revoked":
        ShareLink.objects.filter(pk=link.pk).update(revoked_at=timezone.now())
    else:
        ShareLink.objects.filter(pk=link.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client.get(page).status_code == 302
    assert client.get(f"/api/jobs/{link.target.uuid}/", HTTP_X_SHARE_TOKEN=link.token).status_code == 404


def test_member_revokes_through_page(link, personas):
    client = APIClient()
    client.force_login(personas["member"])
    assert client.post(f"/share/{link.uuid}/revoke/").status_code == 302
    link.refresh_from_db()
    assert link.is_revoked
    assert APIClient().get(f"/s/{link.token}/").status_code == 410


def test_expiry_set_at_creation(personas, redis_conn):
    job = submit_job(personas["project"], "test_steps", {"steps": 1}, user=personas["owner"])
    client = APIClient()
    client.force_login(personas["owner"])
    body = {"target_type": "job", "target_uuid": str(job.uuid), "expires_in_hours": 1}
    response = client.post("/api/share-links/", body, format="json")
    assert response.status_code == 201, response.json()
    created = ShareLink.objects.get(uuid=response.json()["uuid"])
    remaining = created.expires_at - timezone.now()
    assert timedelta(minutes=59) < remaining <= timedelta(hours=1)
