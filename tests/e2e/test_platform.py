"""The platform in a real Chromium: sign in, upload, run a job, watch it, share it."""

import re

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.conftest import start_worker
from tests.web.test_jobs import kill_process_tree

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def sign_in(page, live, username):
    page.goto(f"{live.url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", f"{username}-password-1")
    page.click("button[type=submit]")
    expect(page.get_by_role("heading", name="Projects", exact=True)).to_be_visible()


@pytest.fixture
def worker(live_asgi):
    process = start_worker("gpu", "default", burst=False)
    yield process
    kill_process_tree(process)


def test_upload_run_and_watch_job(live_asgi, worker, personas, new_context, screenshot, tmp_path):
    image_path = tmp_path / "nuclei.png"
    pixels = (np.random.default_rng(0).random((96, 128)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(image_path)

    page = new_context().new_page()
    sign_in(page, live_asgi, "owner")
    page.get_by_role("link", name="Cell biology").click()
    page.fill("input[name=name]", "Session 1 <b>images</b>")
    page.get_by_role("button", name="Create dataset").click()
    expect(page.get_by_role("heading", name="Session 1 <b>images</b>")).to_be_visible()

    page.locator("[data-component=uploader] input[type=file]").set_input_files(str(image_path))
    expect(page.locator("table").get_by_text("nuclei.png")).to_be_visible(timeout=30_000)
    screenshot(page, "dataset-after-upload")

    page.get_by_role("button", name=re.compile("Verify", re.I)).click()
    progress = page.locator("[data-component=job-progress] .job-progress")
    expect(progress).to_have_attribute("data-status", "succeeded", timeout=60_000)
    expect(page.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    expect(page.get_by_text("100%").first).to_be_visible()
    expect(page.get_by_text("intact").first).to_be_visible()
    screenshot(page, "job-succeeded")


def test_share_link_in_fresh_context(live_asgi, worker, personas, new_context):
    from biovlm_web.core.jobs import submit_job

    job = submit_job(personas["project"], "test_steps", {"steps": 3, "delay": 0}, user=personas["owner"])
    page = new_context().new_page()
    sign_in(page, live_asgi, "owner")
    page.goto(f"{live_asgi.url}/jobs/{job.uuid}/")
    expect(page.locator("[data-component=job-progress] .job-progress")).to_have_attribute("data-status", "succeeded", timeout=60_000)
    page.fill("input[name=label]", "for <collaborator>")
    page.get_by_role("button", name="Create share link").click()
    share_url = page.locator("input.share-url").first.input_value()
    assert "/s/" in share_url

    visitor = new_context().new_page()
    visitor.goto(share_url)
    expect(visitor.get_by_text("You are viewing a shared, read-only result.")).to_be_visible()
    expect(visitor.locator("[data-component=job-progress] .job-progress")).to_have_attribute("data-status", "succeeded")
    expect(visitor.get_by_role("button", name="Create share link")).to_have_count(0)

    page.get_by_role("button", name="Revoke").click()
    visitor.goto(share_url)
    expect(visitor.get_by_role("heading", name="This share link was revoked")).to_be_visible()
    visitor.goto(f"{live_asgi.url}/jobs/{job.uuid}/")
    expect(visitor.get_by_role("heading", name="Sign in")).to_be_visible()
