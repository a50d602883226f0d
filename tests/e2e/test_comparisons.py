"""A comparison in a real Chromium: build two groups, run, read evidence, type, export, share."""

import pytest
from playwright.sync_api import expect

from tests.comparisons.images import png_bytes, synthetic_groups, zip_bytes
from tests.conftest import start_worker
from tests.e2e.test_platform import sign_in
from tests.web.test_jobs import kill_process_tree

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

DROP_FILE = """
async ([selector, name, base64]) => {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0))
  const transfer = new DataTransfer()
  transfer.items.add(new File([bytes], name, { type: 'application/zip' }))
  const target = document.querySelector(selector)
  target.dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }))
}
"""


def test_comparison_end_to_end(live_asgi, personas, new_context, screenshot, tmp_path):
    import base64

    images_a, images_b = synthetic_groups(6)
    files_a = []
    for index, pixels in enumerate(images_a):
        path = tmp_path / f"crowded-{index}.png"
        path.write_bytes(png_bytes(pixels))
        files_a.append(str(path))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really a PNG")
    files_a.append(str(broken))
    archive = zip_bytes({f"sparse/b{index}.png": png_bytes(pixels) for index, pixels in enumerate(images_b)})

    page = new_context(accept_downloads=True).new_page()
    sign_in(page, live_asgi, "owner")
    page.get_by_role("link", name="Cell biology").click()
    form = page.locator("form[action$='/comparisons/new/']")
    form.locator("input[name=name]").fill("Drug <b>screen</b>")
    form.locator("input[name=name_a]").fill("Crowded")
    form.locator("input[name=name_b]").fill("Sparse")
    form.get_by_role("button", name="Create comparison").click()
    expect(page.locator("h1")).to_contain_text("Drug <b>screen</b>")

    group_a = page.locator(".comparison-group[data-group=a]")
    group_b = page.locator(".comparison-group[data-group=b]")
    group_a.locator("input[type=file]:not([webkitdirectory])").set_input_files(files_a)
    page.evaluate(DROP_FILE, [".comparison-group[data-group=b]", "sparse.zip", base64.b64encode(archive).decode()])
    expect(group_a).to_have_attribute("data-count", "6", timeout=30_000)
    expect(group_b).to_have_attribute("data-count", "6", timeout=30_000)
    expect(group_a.locator(".thumbnails img")).to_have_count(6)
    expect(group_a.locator(".skipped")).to_contain_text("broken.png")
    group_a.locator(".thumbnail").first.hover()
    group_a.get_by_role("button", name="Remove crowded-0.png").click()
    expect(group_a).to_have_attribute("data-count", "5")
    screenshot(page, "comparison-groups")

    page.fill("input[name=resamples]", "200")
    page.fill("input[name=permutations]", "200")
    page.get_by_role("button", name="Run comparison").click()
    expect(page.locator("[data-component=job-progress] .job-progress")).to_be_visible()
    worker = start_worker("default")
    try:
        worker.wait(timeout=120)
    finally:
        if worker.poll() is None:
            kill_process_tree(worker)
    # The progress component reloads the page when the job succeeds.
    expect(page.locator("table.hypotheses tbody tr").first).to_be_visible(timeout=30_000)
    expect(page.locator("[data-component=job-progress] .job-progress")).to_have_attribute("data-status", "succeeded")

    top = page.locator("table.hypotheses tbody tr").first
    top.click()
    evidence = page.locator("section.evidence")
    expect(evidence).to_be_visible()
    for key in ("a_best", "b_best", "b_worst"):
        expect(evidence.locator(f".evidence-group[data-group={key}] img")).to_have_count(3)
    expect(evidence.locator(".score-plot")).to_have_attribute("data-drawn", "true", timeout=20_000)
    expect(evidence.locator(".score-plot .main-svg").first).to_be_visible()
    screenshot(page, "comparison-evidence")
    expect(page.locator(".rank-order")).to_contain_text("Sorted by AUROC, highest first.")
    # The evidence names the measured property in words, not by its feature key.
    expect(evidence.locator(".ranked-by")).to_contain_text("Ranked on each image's measured ")
    expect(evidence.locator(".ranked-by")).not_to_contain_text("_")
    # Long image names are cut with an ellipsis on one line, and the title contains the whole name.
    name = evidence.locator(".file-name").first
    expect(name).to_have_attribute("title", name.inner_text())
    expect(name).to_have_css("white-space", "nowrap")
    expect(name).to_have_css("text-overflow", "ellipsis")

    page.fill("input[name=hypothesis]", "more cells per image")
    page.get_by_role("button", name="Rank hypothesis").click()
    # The server loads the sentence embedder on the first typed hypothesis, which takes seconds.
    expect(page.locator(".typed-result")).to_contain_text("Ranked #", timeout=120_000)
    expect(page.locator(".typed-result")).to_contain_text(
        'Matched to the measured property "more objects per image" (object_count) by the sentence embedder'
    )
    typed_row = page.locator("table.hypotheses tbody tr", has_text="more cells per image")
    expect(typed_row).to_have_count(1)
    expect(typed_row.locator(".typed-match")).to_have_text("matched: more objects per image (object_count)")
    expect(typed_row.locator(".typed-match")).to_have_attribute("data-path", "sentence_embedder")
    expect(evidence).to_contain_text("Evidence: more cells per image")
    expect(evidence.locator(".typed-ranking")).to_contain_text("by the sentence embedder, cosine similarity")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="HTML report").click()
    report = tmp_path / "report.html"
    download_info.value.save_as(report)
    html = report.read_text()
    assert "Drug &lt;b&gt;screen&lt;/b&gt;" in html
    assert "more cells per image" in html
    assert html.count("data:image/jpeg;base64,") >= 3

    page.fill("input[name=label]", "for review")
    page.get_by_role("button", name="Create share link").click()
    share_url = page.locator("input.share-url").first.input_value()

    visitor = new_context().new_page()
    visitor.goto(share_url)
    expect(visitor.get_by_text("You are viewing a shared, read-only result.")).to_be_visible()
    shared_typed_row = visitor.locator("table.hypotheses tbody tr", has_text="more cells per image")
    expect(shared_typed_row).to_have_count(1)
    expect(shared_typed_row.locator(".typed-match")).to_have_text("matched: more objects per image (object_count)")
    expect(visitor.locator("input[name=hypothesis]")).to_have_count(0)
    expect(visitor.get_by_role("button", name="Run comparison")).to_have_count(0)
    visitor.locator("table.hypotheses tbody tr").first.click()
    expect(visitor.locator("section.evidence .evidence-group[data-group=a_best] img")).to_have_count(3)
    expect(visitor.locator("section.evidence .score-plot")).to_have_attribute("data-drawn", "true", timeout=20_000)
    screenshot(visitor, "comparison-shared")
