"""Static assets every page links."""

from django.contrib.staticfiles import finders


def test_favicon_redirects_to_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"].endswith("/icons/favicon.svg")
    assert finders.find("icons/favicon.svg")
