"""The home page in Chromium: capabilities, the running worker and the model roles."""

import pytest
from playwright.sync_api import expect

from tests.e2e.test_platform import sign_in, worker  # noqa: F401  the worker fixture

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_home_shows_platform_state(live_asgi, worker, personas, new_context, screenshot):  # noqa: F811
    page = new_context().new_page()
    sign_in(page, live_asgi, "owner")

    for title in ("Cryo-ET spatial query", "Set-difference comparison", "Lab video anomaly review"):
        expect(page.get_by_role("heading", name=title)).to_be_visible()
    # The worker registers with Redis a moment after it starts; reload until it shows.
    workers = page.locator("table.workers tbody tr")
    for _ in range(40):
        if workers.count():
            break
        page.wait_for_timeout(250)
        page.reload()
    expect(workers.first).to_contain_text("gpu, default")
    expect(page.locator('tr[data-queue="gpu"]')).to_be_visible()
    expect(page.locator('tr[data-role="llm"]')).to_be_visible()
    screenshot(page, "home")

    # On a laptop screen the models table, long checkpoint paths included, stays on its card.
    page.set_viewport_size({"width": 1366, "height": 768})
    overflow = page.evaluate(
        """() => {
            const card = document.querySelector('#models').getBoundingClientRect()
            const table = document.querySelector('table.models').getBoundingClientRect()
            return table.right - card.right
        }"""
    )
    assert overflow <= 0, f"the models table runs {overflow:.0f} px past its card"

    page.locator('[data-capability="cryoet"]').get_by_role("link", name="Tomograms").click()
    expect(page).to_have_url(f"{live_asgi.url}/projects/{personas['project'].uuid}/tomograms/")
