"""Permission matrix over every URL pattern of the project, generated from the URL configuration.

Each route (a URL name) is requested with each HTTP method its view declares (GET and POST for
function views) by five personas: the project owner, a project member, a stranger (signed in,
member of another project), an anonymous visitor, and a share-link visitor who opened a valid
share link to each shareable result of the project. A route that is added to the URL
configuration without a row here fails ``test_route_permissions`` with the route's name and
pattern, so no endpoint can be added without deciding who may use it.

Write requests send a body that names the project's own objects (see ``request_body``), so a
400 for the owner means the request passed the permission check and failed validation, while a
404 for the stranger means the object stayed hidden.
"""

import pytest
from django.urls import reverse

from tests.security.conftest import PERSONAS, persona_client
from tests.security.urlconf import Route, is_staff_only, path_for, request_body, routes

# Expected status per persona, in the order owner, member, stranger, anonymous, share visitor.
MATRIX = {
    "anomaly-run-detail": {"GET": "200 200 404 302 200", "POST": "200 200 404 302 200"},
    "anomaly-run-export": {"GET": "200 200 404 404 200", "POST": "200 200 404 404 200"},
    "anomaly-run-masks": {"GET": "200 200 404 404 200", "POST": "200 200 404 404 200"},
    "anomaly-run-video": {"GET": "200 200 404 404 200", "POST": "200 200 404 404 200"},
    "anomaly-scene-create": {"GET": "405 405 405 302 302", "POST": "302 302 404 302 302"},
    "anomaly-scene-detail": {"GET": "200 200 404 302 302", "POST": "200 200 404 302 302"},
    "anomaly-scene-fit": {"GET": "405 405 405 302 302", "POST": "302 302 404 302 302"},
    "anomaly-scene-frame": {"GET": "200 200 404 302 302", "POST": "200 200 404 302 302"},
    "anomaly-scene-runs": {"GET": "405 405 405 302 302", "POST": "302 302 404 302 302"},
    "anomaly-scene-upload": {"GET": "405 405 405 302 302", "POST": "302 302 404 302 302"},
    "anomaly-scene-videos": {"GET": "405 405 405 302 302", "POST": "302 302 404 302 302"},
    "api-comparison-detail": {
        "DELETE": "204 204 404 401 401",
        "GET": "200 200 404 401 401",
        "PATCH": "200 200 404 401 401",
        "PUT": "405 405 405 401 401",
    },
    "api-comparison-images": {
        "DELETE": "400 400 404 401 401",
        "GET": "200 200 404 401 401",
        "HEAD": "200 200 404 401 401",
        "POST": "400 400 404 401 401",
    },
    "api-comparison-list": {"GET": "200 200 200 401 401", "POST": "201 201 404 401 401"},
    "api-comparison-rank": {"POST": "400 400 404 401 401"},
    "api-comparison-remove-image": {"DELETE": "204 204 404 401 401"},
    "api-comparison-run": {"POST": "202 202 404 401 401"},
    "api-dataset-detail": {"GET": "200 200 404 401 401"},
    "api-dataset-files": {"GET": "200 200 404 401 401", "POST": "415 415 404 401 401"},
    "api-dataset-list": {"GET": "200 200 200 401 401", "POST": "201 201 404 401 401"},
    "api-docs": {"GET": "200 200 200 200 200"},
    "api-file-detail": {"DELETE": "204 204 404 401 401", "GET": "200 200 404 401 401"},
    "api-file-download": {"GET": "200 200 404 401 401"},
    "api-file-list": {"GET": "200 200 200 401 401"},
    "api-hypothesis-detail": {
        "GET": "200 200 404 401 401",
        "PATCH": "200 200 404 401 401",
        "PUT": "405 405 405 401 401",
    },
    "api-hypothesis-list": {"GET": "200 200 200 401 401"},
    "api-job-cancel": {"POST": "200 200 404 401 401"},
    "api-job-detail": {"GET": "200 200 404 404 200"},
    "api-job-list": {"GET": "200 200 200 401 401", "POST": "201 201 400 401 401"},
    "api-job-retry": {"POST": "201 201 404 401 401"},
    "api-models": {"GET": "200 200 200 401 401"},
    "api-models-check": {"POST": "201 201 201 401 401"},
    "api-project-detail": {"GET": "200 200 404 401 401", "PATCH": "200 403 404 401 401", "PUT": "200 403 404 401 401"},
    "api-project-list": {"GET": "200 200 200 401 401", "POST": "201 201 201 401 401"},
    "api-project-members": {"GET": "200 200 404 401 401", "POST": "201 403 404 401 401"},
    "api-project-remove-member": {"DELETE": "204 403 404 401 401"},
    "api-root": {"GET": "200 200 200 401 401"},
    "api-scene-detail": {"DELETE": "204 204 404 401 401", "GET": "200 200 404 401 401", "PATCH": "200 200 404 401 401"},
    "api-scene-export": {"GET": "200 200 404 401 401"},
    "api-scene-fit": {"POST": "202 202 404 401 401"},
    "api-scene-list": {"GET": "200 200 200 401 401", "HEAD": "200 200 200 401 401", "POST": "201 201 404 401 401"},
    "api-scene-metrics": {"GET": "200 200 404 401 401"},
    "api-scene-runs": {"POST": "400 400 404 401 401"},
    "api-segment-detail": {"GET": "200 200 404 401 401"},
    "api-segment-list": {"GET": "200 200 200 401 401"},
    "api-segment-verdicts": {"POST": "201 201 404 401 401"},
    "api-share-link-detail": {"GET": "200 200 404 401 401"},
    "api-share-link-list": {"GET": "200 200 200 401 401", "POST": "201 201 404 401 401"},
    "api-share-link-revoke": {"POST": "200 200 404 401 401"},
    "api-token": {"POST": "400 400 400 400 400"},
    "api-tomogram-detail": {"GET": "200 200 404 401 401", "PATCH": "400 400 404 401 401"},
    "api-tomogram-list": {"GET": "200 200 200 401 401", "POST": "400 400 400 401 401"},
    "api-tomogram-query": {"POST": "400 400 404 401 401"},
    "api-tomogram-run-ask": {"POST": "200 200 404 401 200"},
    "api-tomogram-run-detail": {"GET": "200 200 404 401 200"},
    "api-tomogram-run-export": {"GET": "200 200 404 401 200"},
    "api-tomogram-run-list": {"GET": "200 200 200 401 401"},
    "api-tomogram-run-particles": {"GET": "200 200 404 401 200"},
    "api-tomogram-run-points": {"GET": "200 200 404 401 200"},
    "api-tomogram-run-query": {"POST": "400 400 404 401 400"},
    "api-tomogram-run-slice": {"GET": "200 200 404 401 200"},
    "api-tomogram-run-subtomogram": {"GET": "200 200 404 401 200"},
    "api-tomogram-runs": {"GET": "200 200 404 401 401", "POST": "201 201 404 401 401"},
    "api-tomogram-slice": {"GET": "200 200 404 401 401"},
    "api-upload-chunk": {"PUT": "400 400 404 401 401"},
    "api-upload-complete": {"POST": "409 409 404 401 401"},
    "api-upload-detail": {"DELETE": "204 204 404 401 401", "GET": "200 200 404 401 401"},
    "api-upload-list": {"GET": "200 200 200 401 401", "HEAD": "200 200 200 401 401", "POST": "201 201 404 401 401"},
    "api-verdict-detail": {"GET": "200 200 404 401 401"},
    "api-verdict-list": {"GET": "200 200 200 401 401"},
    "api-video-run-detail": {"DELETE": "204 204 404 401 401", "GET": "200 200 404 401 401"},
    "api-video-run-export": {"GET": "200 200 404 401 401"},
    "api-video-run-list": {"GET": "200 200 200 401 401"},
    "api-video-run-masks": {"GET": "200 200 404 401 401"},
    "api-video-run-segments": {"POST": "400 400 404 401 401"},
    "comparison-create": {"GET": "405 405 405 302 302", "POST": "302 302 404 302 302"},
    "comparison-detail": {"GET": "200 200 404 302 200", "POST": "200 200 404 302 200"},
    "comparison-export": {"GET": "200 200 404 404 200", "POST": "200 200 404 404 200"},
    "comparison-image": {"GET": "200 200 404 404 200", "POST": "200 200 404 404 200"},
    "comparison-run": {"GET": "405 405 405 302 302", "POST": "302 302 404 302 302"},
    "dataset-create": {"GET": "405 405 405 302 302", "POST": "302 302 404 302 302"},
    "dataset-detail": {"GET": "200 200 404 302 302", "POST": "405 405 405 302 302"},
    "dataset-verify": {"GET": "405 405 405 302 302", "POST": "302 302 404 302 302"},
    "favicon.ico": {
        "DELETE": "301 301 301 301 301",
        "GET": "301 301 301 301 301",
        "PATCH": "301 301 301 301 301",
        "POST": "301 301 301 301 301",
        "PUT": "301 301 301 301 301",
    },
    "home": {"GET": "200 200 200 302 302", "POST": "200 200 200 302 302"},
    "job-cancel": {"GET": "405 405 405 302 302", "POST": "302 302 404 302 302"},
    "job-detail": {"GET": "200 200 404 302 200", "POST": "200 200 404 302 200"},
    "job-retry": {"GET": "405 405 405 302 302", "POST": "302 302 404 302 302"},
    "login": {"GET": "302 302 302 200 200", "POST": "302 302 302 200 200", "PUT": "302 302 302 200 200"},
    "logout": {"GET": "405 405 405 405 405", "POST": "302 302 302 302 302"},
    "models": {"GET": "200 200 200 302 302", "POST": "200 200 200 302 302"},
    "models-check": {"GET": "405 405 405 302 302", "POST": "302 302 302 302 302"},
    "project-create": {"GET": "405 405 405 302 302", "POST": "400 400 400 302 302"},
    "project-detail": {"GET": "200 200 404 302 302", "POST": "200 200 404 302 302"},
    "project-members": {"GET": "405 405 405 302 302", "POST": "302 403 404 302 302"},
    "schema": {"GET": "200 200 200 200 200"},
    "share-create": {"GET": "405 405 405 302 302", "POST": "302 302 404 302 302"},
    "share-open": {"GET": "302 302 302 302 302", "POST": "302 302 302 302 302"},
    "share-revoke": {"GET": "405 405 405 302 302", "POST": "302 302 404 302 302"},
    "tomogram-detail": {"GET": "200 200 404 302 302", "POST": "405 405 405 302 302"},
    "tomogram-list": {"GET": "200 200 404 302 302", "POST": "405 405 405 302 302"},
    "tomogram-references": {"GET": "405 405 405 302 302", "POST": "302 302 404 302 302"},
    "tomogram-register": {"GET": "405 405 405 302 302", "POST": "302 302 404 302 302"},
    "tomogram-run-create": {"GET": "405 405 405 302 302", "POST": "302 302 404 302 302"},
    "tomogram-run-detail": {"GET": "200 200 404 302 200", "POST": "200 200 404 302 200"},
    "tomogram-upload": {"GET": "405 405 405 302 302", "POST": "302 302 404 302 302"},
    "tomogram-voxel-size": {"GET": "405 405 405 302 302", "POST": "302 302 404 302 302"},
}

ROUTES = routes()
CASES = [
    (name, method, persona)
    for name, route in sorted(ROUTES.items())
    if not is_staff_only(name)
    for method in sorted(route.methods or {"GET", "POST"})
    for persona in PERSONAS
]


def expected_status(name: str, method: str, persona: str) -> int:
    route = ROUTES[name]
    if name not in MATRIX:
        pytest.fail(
            f"URL pattern {' | '.join(route.patterns)} (name {name!r}) has no row in the permission matrix; "
            "add its expected status for each persona to MATRIX in tests/security/test_permission_matrix.py."
        )
    if method not in MATRIX[name]:
        pytest.fail(f"URL name {name!r} answers {method}, which has no row in the permission matrix.")
    return int(MATRIX[name][method].split()[PERSONAS.index(persona)])


def send(client, method: str, path: str, body: dict):
    if method in ("GET", "HEAD"):
        return getattr(client, method.lower())(path)
    return getattr(client, method.lower())(path, body, format="json")


@pytest.mark.parametrize(("name", "method", "persona"), CASES, ids=[" ".join(case) for case in CASES])
def test_route_permissions(world, db, name, method, persona):
    expected = expected_status(name, method, persona)
    route = ROUTES[name]
    path = path_for(route, method, world)
    response = send(persona_client(world, persona), method, path, request_body(route, method, world))
    assert response.status_code == expected, f"{method} {path} as {persona}: {response.content[:300]!r}"


def test_format_suffix_paths_are_not_routes(world, db):
    """``.json`` suffix routes crashed custom actions with TypeError (500); the router no longer adds them."""
    client = persona_client(world, "owner")
    for path in (
        f"/api/comparisons/{world['comparison'].uuid}/images.json",
        f"/api/tomogram-runs/{world['tomogram_run'].uuid}/slices/1.json",
        "/api/projects.json",
    ):
        assert client.get(path).status_code == 404, path


def test_matrix_has_no_stale_rows():
    stale = sorted(set(MATRIX) - set(ROUTES))
    assert stale == [], f"MATRIX names URL names that no longer exist: {stale}"


def test_matrix_covers_every_declared_method():
    missing = [
        f"{name} {method}"
        for name, route in ROUTES.items()
        if name in MATRIX and route.methods
        for method in route.methods - set(MATRIX[name])
    ]
    assert missing == [], f"Views answer methods the matrix does not list: {missing}"


# Values for the path parameters of admin and django-rq routes. What they name need not exist,
# because the staff check runs before the view reads them.
STAFF_ROUTE_VALUES = {
    "app_label": "auth",
    "id": "1",
    "object_id": "1",
    "content_type_id": "1",
    "url": "auth/user/",
    "queue_index": 0,
    "scheduler_index": 0,
    "connection_index": 0,
    "job_id": "no-such-job",
    "result_id": "no-such-result",
    "key": "no-such-worker",
    "scheduler_name": "no-such-scheduler",
    "cron_job_name": "no-such-job",
    "token": "no-such-token",
}
# Admin routes that are not behind the staff check: the sign-in page and sign-out.
STAFF_ROUTES_OPEN = {"admin:login", "admin:logout"}
STAFF_CASES = [
    (name, persona)
    for name in sorted(ROUTES)
    if is_staff_only(name) and name not in STAFF_ROUTES_OPEN
    for persona in ("owner", "stranger", "anonymous", "share")
]


# django-rq's statistics in JSON return 401 to anyone who is neither staff nor holds RQ_API_TOKEN
# (unset here), with the token in the path or not.
RQ_STATS_PATHS = ["/admin/rq/stats.json/", "/admin/rq/stats.json/nosuchtoken/"]


def staff_route_paths(route) -> list[str]:
    if route.name == "django_rq:home_json":
        return RQ_STATS_PATHS
    if route.name == "admin:":
        return ["/admin/auth/user/"]
    return [reverse(route.name, kwargs={name: STAFF_ROUTE_VALUES[name] for name in route.parameters})]


@pytest.mark.parametrize(("name", "persona"), STAFF_CASES, ids=[" ".join(case) for case in STAFF_CASES])
def test_staff_routes_reject_others(world, db, name, persona):
    client = persona_client(world, persona)
    for path in staff_route_paths(ROUTES[name]):
        response = client.get(path)
        if name == "django_rq:home_json":
            assert response.status_code == 401, f"GET {path} as {persona}: {response.status_code}"
            continue
        assert response.status_code == 302, f"GET {path} as {persona}: {response.status_code}"
        assert response["Location"].startswith("/admin/login/"), response["Location"]


@pytest.mark.parametrize("name", ["admin:index", "admin:auth_user_changelist", "django_rq:home"])
def test_staff_routes_open_to_superuser(world, db, name):
    assert persona_client(world, "admin").get(reverse(name)).status_code == 200


def test_unknown_route_fails_naming_pattern(monkeypatch):
    monkeypatch.setitem(ROUTES, "api-new-thing", Route("api-new-thing", ["api/^new-thing/$"], {"GET"}))
    with pytest.raises(pytest.fail.Exception) as failure:
        expected_status("api-new-thing", "GET", "owner")
    assert "api/^new-thing/$" in str(failure.value)
    assert "'api-new-thing'" in str(failure.value)
