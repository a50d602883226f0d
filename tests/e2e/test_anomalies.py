"""Anomaly review in a real Chromium: scene, zone, fit, analyse, masks, timeline, verdicts, export, share."""

import json
import re

import pytest
from playwright.sync_api import expect

from analysis.anomaly.simulate import ZONE_BOXES, simulate_video
from tests.conftest import start_worker
from tests.e2e.test_platform import sign_in
from tests.web.test_anomalies import VIDEO_OPTIONS
from tests.web.test_jobs import kill_process_tree

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def run_jobs():
    worker = start_worker("default")
    try:
        worker.wait(timeout=120)
    finally:
        if worker.poll() is None:
            kill_process_tree(worker)


def click_at_fraction(page, selector, x, y):
    target = page.locator(selector)
    target.scroll_into_view_if_needed()
    box = target.bounding_box()
    target.click(position={"x": x * box["width"], "y": y * box["height"]})


def test_anomaly_review_end_to_end(live_asgi, personas, new_context, screenshot, tmp_path):
    simulate_video(tmp_path / "normal.mp4", None, seed=1, **VIDEO_OPTIONS)
    truth = simulate_video(tmp_path / "restricted.mp4", "restricted_zone", seed=2, **VIDEO_OPTIONS)

    page = new_context(accept_downloads=True).new_page()
    sign_in(page, live_asgi, "owner")
    page.get_by_role("link", name="Cell biology").click()
    form = page.locator("form[action$='/anomaly-scenes/new/']")
    form.locator("input[name=name]").fill("Bench <1>")
    form.get_by_role("button", name="Create scene").click()
    expect(page.locator("h1")).to_have_text("Bench <1>")

    upload = page.locator("form.anomaly-upload")
    upload.locator("input[name=videos]").set_input_files(str(tmp_path / "normal.mp4"))
    upload.locator("select[name=purpose]").select_option("normal")
    upload.get_by_role("button", name="Upload").click()
    expect(page.get_by_text("Stored normal.mp4 as normal videos.")).to_be_visible()
    expect(page.get_by_label("normal.mp4")).to_be_checked()
    expect(page.locator(".zone-canvas img")).to_be_visible()

    x1, y1, x2, y2 = ZONE_BOXES["restricted"]
    for x, y in ((x1, y1), (x2, y1), (x2, y2), (x1, y2)):
        click_at_fraction(page, ".zone-overlay", x, y)
    page.fill("input[name=zone-name]", "restricted")
    page.select_option("select[name=zone-kind]", "restricted")
    page.get_by_role("button", name="Add zone (4 points)").click()
    expect(page.locator(".zone-overlay polygon")).to_have_count(1)
    page.get_by_role("button", name="Save zones and rules").click()
    expect(page.locator(".rules-status")).to_contain_text("Saved.")
    screenshot(page, "anomaly-scene-zone")

    page.get_by_role("button", name="Fit scene").click()
    expect(page.locator("[data-component=job-progress] .job-progress")).to_be_visible()
    run_jobs()
    # The progress component reloads the page when the job succeeds.
    expect(page.locator(".scene-fitted")).to_be_visible(timeout=30_000)

    upload = page.locator("form.anomaly-upload")
    upload.locator("input[name=videos]").set_input_files(str(tmp_path / "restricted.mp4"))
    upload.locator("select[name=purpose]").select_option("review")
    upload.get_by_role("button", name="Upload").click()
    expect(page.get_by_text("Stored restricted.mp4 as videos to analyse.")).to_be_visible()
    run_jobs()
    page.get_by_role("link", name="restricted.mp4").click()

    timeline = page.locator(".score-timeline")
    expect(timeline).to_have_attribute("data-drawn", "true", timeout=20_000)
    bands = page.locator(".bands .band")
    expect(bands.first).to_be_visible()
    assert int(timeline.get_attribute("data-bands")) == bands.count()
    start = float(bands.first.inner_text().split(" s")[0])
    assert start < truth.anomalies[0].end_s

    bands.first.click()
    video = page.locator("video.review-video")
    page.wait_for_function("() => document.querySelector('video.review-video').readyState >= 2")
    assert abs(video.evaluate("element => element.currentTime") - start) < 0.2
    # Seek to the frame with the most mask polygons: the overlay draws that frame's masks and boxes.
    busiest = page.evaluate(
        """async () => {
        const review = JSON.parse(document.getElementById('anomaly-review').textContent)
        const masks = await (await fetch(review.masks_url)).json()
        const counts = masks.frames.map((items) => items.reduce((sum, item) => sum + item.polygons.length, 0))
        const index = counts.indexOf(Math.max(...counts))
        return { index, time: review.times[index], masks: counts[index], boxes: review.tracks[index].length }
    }"""
    )
    assert busiest["masks"] > 0
    assert busiest["boxes"] > 0
    video.evaluate("(element, time) => { element.currentTime = time + 0.01 }", busiest["time"])
    overlay = page.locator("canvas.track-overlay")
    expect(overlay).to_have_attribute("data-frame-index", str(busiest["index"]))
    expect(overlay).to_have_attribute("data-masks", str(busiest["masks"]))
    expect(overlay).to_have_attribute("data-boxes", str(busiest["boxes"]))
    screenshot(page, "anomaly-masks")
    page.get_by_label("Show masks").uncheck()
    expect(overlay).to_have_attribute("data-masks", "0")
    expect(overlay).to_have_attribute("data-boxes", str(busiest["boxes"]))
    page.get_by_label("Show masks").check()
    expect(overlay).to_have_attribute("data-masks", str(busiest["masks"]))

    # At the run's threshold every band is a stored segment, explained from measured facts.
    segment = page.locator(".review-segment").first
    expect(page.locator(".reasoner-status")).to_contain_text("The VLM is unavailable")
    expect(segment.locator(".path")).to_have_text("measured facts")
    expect(page.locator(".bands .band-stored")).to_have_count(bands.count())
    expect(page.locator(".bands .confirm-band")).to_have_count(0)
    expect(page.locator(".segment-rules")).to_contain_text("Runs shorter than 0.5 s are")
    expect(page.locator(".segment-rules")).to_contain_text("separated by at most 1 s below the threshold are merged")
    # Check names and rule names show as labels, not as the ids the analysis stores.
    for line in segment.locator(".scene-checks, .rule-hits").all_inner_texts():
        assert "_" not in line, line
    segment.get_by_role("button", name="Confirm").click()
    expect(segment.locator(".verdict-state")).to_contain_text("confirm as")
    expect(segment.locator(".verdict-state")).to_contain_text("by owner")
    segment.locator("input.start").fill("6")
    segment.locator("input.end").fill("5")
    segment.get_by_role("button", name="Adjust start and end").click()
    expect(segment.locator(".error")).to_have_text("End (5 s) must be after Start (6 s).")

    # At threshold 0 the whole video is one band, which no stored segment matches: confirm it as a new one.
    page.locator("input[name=threshold]").fill("0")
    expect(page.locator(".live-count")).to_have_text("1 segment(s) at threshold 0.00:")
    expect(timeline).to_have_attribute("data-bands", "1")
    # The new band overlaps the stored segment, so its category is preselected.
    expect(page.locator(".bands select.band-category")).to_have_value("restricted_zone")
    page.locator(".bands select.band-category").select_option("spill")
    page.locator(".bands .confirm-band").click()
    added = page.locator(".review-segment", has=page.locator(".origin"))
    expect(added.locator(".origin")).to_have_text("Added by owner at threshold 0.00.")
    expect(added.locator(".verdict-state")).to_contain_text("confirm as spill or leak")
    expect(added.locator(".verdict-state")).to_contain_text("by owner")
    expect(page.locator(".review-segment")).to_have_count(2)
    # The whole-video span holds many hits of one rule; the page lists the rule and each message once.
    assert added.locator(".rule-hits").inner_text().count("entry into a restricted zone") == 1
    reasoning = added.locator(".reasoning").inner_text().splitlines()
    assert len(reasoning) == len(set(reasoning))
    expect(page.locator(".bands .band-stored")).to_have_count(1)
    screenshot(page, "anomaly-review")

    with page.expect_download() as download_info:
        page.locator("a.export-json").click()
    exported = json.loads(download_info.value.path().read_text())
    assert exported["videos"][0]["video"] == "restricted.mp4"
    assert [item["category"] for item in exported["videos"][0]["segments"]] == ["spill", "restricted_zone"]
    assert exported["videos"][0]["segments"][0]["category_label"] == "spill or leak"

    page.fill("input[name=label]", "for review")
    page.get_by_role("button", name="Create share link").click()
    share_url = page.locator("input.share-url").first.input_value()

    visitor = new_context().new_page()
    visitor.goto(share_url)
    expect(visitor.get_by_text("You are viewing a shared, read-only result.")).to_be_visible()
    expect(visitor.locator(".review-segment .verdict-state").first).to_contain_text("by owner")
    expect(visitor.locator(".score-timeline")).to_have_attribute("data-drawn", "true", timeout=20_000)
    expect(visitor.get_by_role("button", name="Confirm")).to_have_count(0)
    expect(visitor.locator(".confirm-band")).to_have_count(0)
    screenshot(visitor, "anomaly-shared")

    # The scene's metrics count the added segment as a true segment the analysis missed.
    page.locator("a", has_text="Bench <1>").first.click()
    metrics = page.locator(".anomaly-metrics")
    expect(metrics.locator("dt:text-is('Fully reviewed videos') + dd")).to_have_text("1")
    expect(metrics.locator("dt:text-is('Segment recall at IoU 0.5') + dd")).to_have_text("0.500")
    # The flagged segment overlaps the whole-video segment with an IoU that depends on its length.
    expect(metrics.locator("dt:text-is('Segment recall at IoU 0.3') + dd")).to_have_text(re.compile(r"^[01]\.\d{3}$"))
