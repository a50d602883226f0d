"""Malformed identifiers in API paths and query strings are 404 and 400, never 500."""

import pytest


@pytest.mark.parametrize(
    "path",
    [
        "/api/jobs/null/",
        "/api/jobs/null,null/cancel/",
        "/api/tomogram-runs/not-a-uuid/points/",
        "/api/projects/%C3%9F/members/",
    ],
)
def test_malformed_uuid_in_path_is_404(api_client, personas, path):
    api_client.force_authenticate(personas["owner"])
    assert api_client.get(path).status_code == 404


@pytest.mark.parametrize(
    "path",
    ["/api/jobs/?project=abc", "/api/segments/?run=abc", "/api/verdicts/?segment=abc", "/api/files/?dataset=abc"],
)
def test_malformed_uuid_in_query_is_400(api_client, personas, path):
    api_client.force_authenticate(personas["owner"])
    response = api_client.get(path)
    assert response.status_code == 400, response.content[:300]
    assert "abc" in response.json()["detail"]
