"""CSRF: every state-changing request of a signed-in browser session needs the CSRF token.

The cases are generated from the URL configuration: every route and every method other than
GET, HEAD and OPTIONS.
"""

import pytest
from rest_framework.test import APIClient

from tests.security.urlconf import is_staff_only, path_for, request_body, routes

ROUTES = routes()
# Routes that accept a write without a CSRF token, and why that is safe.
CSRF_EXEMPT = {
    # DRF's token view reads a username and password and uses no session or cookie.
    "api-token": "takes credentials in the body, not a session",
    # A permanent redirect to the icon for any method; it changes nothing.
    "favicon.ico": "a redirect that changes nothing",
}
CASES = [
    (name, method)
    for name, route in sorted(ROUTES.items())
    if not is_staff_only(name) and name not in CSRF_EXEMPT
    for method in sorted((route.methods or {"GET", "POST"}) - {"GET", "HEAD", "OPTIONS"})
]


def session_client(user, enforce_csrf: bool) -> APIClient:
    client = APIClient(enforce_csrf_checks=enforce_csrf)
    client.force_login(user)
    return client


@pytest.mark.parametrize(("name", "method"), CASES, ids=[" ".join(case) for case in CASES])
def test_write_without_csrf_token_rejected(world, db, name, method):
    route = ROUTES[name]
    path = path_for(route, method, world)
    client = session_client(world["owner"], enforce_csrf=True)
    response = getattr(client, method.lower())(path, request_body(route, method, world), format="json")
    assert response.status_code == 403, f"{method} {path}: {response.status_code} {response.content[:200]!r}"
    assert b"CSRF" in response.content


def test_write_with_csrf_token_accepted(world, db):
    """The same check passes with the token, so the 403 above comes from CSRF and not from permissions."""
    client = session_client(world["owner"], enforce_csrf=True)
    page = client.get("/")
    token = page.cookies["csrftoken"].value
    response = client.post(f"/api/jobs/{world['job'].uuid}/cancel/", {}, format="json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200, response.content[:300]


def test_staff_writes_need_csrf_token(world, db):
    client = session_client(world["admin"], enforce_csrf=True)
    response = client.post("/admin/auth/user/add/", {"username": "made-without-token"})
    assert response.status_code == 403
