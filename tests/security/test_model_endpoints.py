"""Only administrators set model endpoints: the server never takes a model source from a user.

Model sources come from ``BIOVLM_MODEL_<ROLE>`` settings. These tests send a URL that a server
would call (an OpenAI-compatible endpoint on 127.0.0.1) through every user-facing route that
could carry one, and check that it is rejected or dropped and that no request reaches it.
"""

import json
import re
import socket
import threading

import pytest
from django.conf import settings

from biovlm_web.core.jobs import job_kinds
from biovlm_web.core.models import Job
from tests.security.conftest import persona_client


@pytest.fixture
def listener():
    """A TCP socket on 127.0.0.1 that records every connection made to it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    connections = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            connections.append(connection.recv(1024))
            connection.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{server.getsockname()[1]}/v1", "connections": connections}
    stop.set()
    thread.join(timeout=2)
    server.close()


def url_params(url: str) -> dict:
    source = f"openai:{url}"
    return {
        "source": source,
        "sources": {"vlm": source, "llm": source, "captioner": source},
        "model": source,
        "endpoint": url,
        "url": url,
        "base_url": url,
        "checkpoint": url,
        "vlm": source,
        "llm": source,
        "options": {"proposers": ["measured"], "llm": source, "endpoint": url},
    }


@pytest.mark.parametrize("method", ["put", "patch", "post", "delete"])
def test_models_api_is_read_only(world, db, listener, method):
    client = persona_client(world, "member")
    before = client.get("/api/models/").json()["roles"]
    body = {"role": "vlm", "source": f"openai:{listener['url']}", "roles": [{"role": "vlm", "source": listener["url"]}]}
    response = getattr(client, method)("/api/models/", body, format="json")
    assert response.status_code == 405
    assert client.get("/api/models/").json()["roles"] == before


def test_models_page_ignores_posted_source(world, db, listener):
    client = persona_client(world, "member")
    response = client.post("/models/", {"role": "vlm", "source": f"openai:{listener['url']}"})
    assert listener["url"] not in response.content.decode()
    assert all(listener["url"] not in text for text in settings.MODEL_SOURCES.values())


def test_job_kinds_drop_or_reject_urls(world, db, listener):
    client = persona_client(world, "member")
    objects = {
        "scene": str(world["scene"].uuid),
        "run": str(world["video_run"].uuid),
        "comparison": str(world["comparison"].uuid),
        "tomogram": str(world["tomogram"].uuid),
        "dataset": str(world["dataset"].uuid),
    }
    for kind in sorted(job_kinds()):
        params = {**objects, **url_params(listener["url"])}
        body = {"project": str(world["project"].uuid), "kind": kind, "params": params}
        response = client.post("/api/jobs/", body, format="json")
        if response.status_code == 400:
            continue
        assert response.status_code == 201, (kind, response.content[:300])
        stored = Job.objects.get(uuid=response.json()["uuid"]).params
        assert "127.0.0.1" not in json.dumps(stored), (kind, stored)


def test_model_check_rejects_parameters(world, db, listener):
    client = persona_client(world, "member")
    body = {"project": str(world["project"].uuid), "kind": "check_models", "params": url_params(listener["url"])}
    response = client.post("/api/jobs/", body, format="json")
    assert response.status_code == 400
    assert "BIOVLM_MODEL_<ROLE>" in response.json()["detail"]


# Request-body fields whose names suggest an address or a model, and why each one is safe.
ADDRESS_LIKE = re.compile(r"url|endpoint|host|source|model|checkpoint|proposer", re.IGNORECASE)
SAFE_ADDRESS_LIKE_FIELDS = {
    "checkpoint": "a name from the list of shipped APT-ViT checkpoints, checked by the tomogram run job",
    "proposers": "names from analysis.setdiff's PROPOSERS, checked by the comparison job",
}


def test_schema_has_no_address_field(world, db):
    """No request body in the OpenAPI schema takes an address or a model source."""
    schema = persona_client(world, "member").get("/api/schema/?format=json").json()
    found = set()

    def visit(node):
        if isinstance(node, dict):
            for name, value in (node.get("properties") or {}).items():
                if not (isinstance(value, dict) and value.get("readOnly")):
                    found.add(name)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    for name, component in schema["components"]["schemas"].items():
        if name.endswith("Request"):
            visit(component)
    suspicious = sorted(name for name in found if ADDRESS_LIKE.search(name) and name not in SAFE_ADDRESS_LIKE_FIELDS)
    assert suspicious == [], f"Request fields that may carry an address or model source: {suspicious}"


def test_model_check_stores_no_request_body(world, db, listener):
    """The model check job the page and API start takes nothing from the request."""
    client = persona_client(world, "member")
    Job.objects.filter(kind="check_models").delete()
    response = client.post("/api/models/check/", url_params(listener["url"]), format="json")
    assert response.status_code == 201, response.content[:300]
    assert Job.objects.get(uuid=response.json()["uuid"]).params == {}
