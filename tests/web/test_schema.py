"""The OpenAPI schema is an artifact: it must generate and validate with no warnings."""

import re

import pytest
import yaml
from django.core.management import call_command
from openapi_spec_validator import validate


def test_schema_generates_without_warnings(tmp_path):
    path = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path))
    schema = yaml.safe_load(path.read_text())
    validate(schema)
    paths = schema["paths"]
    for expected in ("/api/projects/", "/api/jobs/{uuid}/", "/api/jobs/{uuid}/cancel/", "/api/share-links/"):
        assert expected in paths, f"{expected} missing from the schema"
    assert {"cookieAuth", "tokenAuth"} <= set(schema["components"]["securitySchemes"])


@pytest.mark.django_db
def test_schema_and_docs_served(client, personas):
    client.force_login(personas["member"])
    assert client.get("/api/schema/").status_code == 200
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    # Every script and stylesheet is served from here; none comes from another host.
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources, "the docs page links no assets"
    assert all(source.startswith("/") for source in sources), sources
