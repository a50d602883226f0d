"""User text is shown escaped and pages satisfy the Content-Security-Policy, in a real Chromium.

Every name and note a user can type is set to a string of HTML with script in it. Each main page
must show that string as literal text, run none of its script, and report no CSP violation.
"""

import pytest
from playwright.sync_api import expect

from tests.e2e.test_platform import sign_in
from tests.security.world import build_world

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PAYLOAD = "<img src=x onerror=\"window.__xss='img'\"><script>window.__xss='script'</script>&amp; \"q\" 'a'"

# Before any page script runs, record CSP violations and keep them across the page's lifetime.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} blocked ${event.blockedURI} at ${event.sourceFile}:${event.lineNumber}`);
});
"""


def set_user_text(world) -> None:
    from biovlm_web.anomalies.models import Verdict

    world["project"].name = PAYLOAD
    world["project"].description = PAYLOAD
    world["project"].save()
    world["dataset"].name = PAYLOAD
    world["dataset"].description = PAYLOAD
    world["dataset"].save()
    world["data_file"].original_name = PAYLOAD + ".mrc"
    world["data_file"].save()
    world["tomogram"].name = PAYLOAD
    world["tomogram"].save()
    world["comparison"].name = PAYLOAD
    world["comparison"].name_a = PAYLOAD
    world["comparison"].save()
    world["hypothesis"].description = PAYLOAD
    world["hypothesis"].save()
    world["scene"].name = PAYLOAD
    world["scene"].save()
    world["segment"].reasoning = PAYLOAD
    world["segment"].save()
    Verdict.objects.filter(uuid=world["verdict"]).update(note=PAYLOAD)
    world["share_links"]["job"].label = PAYLOAD
    world["share_links"]["job"].save()


def main_pages(world) -> dict[str, str]:
    return {
        "home": "/",
        "project": f"/projects/{world['project'].uuid}/",
        "dataset": f"/datasets/{world['dataset'].uuid}/",
        "tomograms": f"/projects/{world['project'].uuid}/tomograms/",
        "tomogram": f"/tomograms/{world['tomogram'].uuid}/",
        "tomogram run": f"/tomogram-runs/{world['tomogram_run'].uuid}/",
        "comparison": f"/comparisons/{world['comparison'].uuid}/",
        "scene": f"/anomaly-scenes/{world['scene'].uuid}/",
        "anomaly run": f"/anomaly-runs/{world['video_run'].uuid}/",
        "job": f"/jobs/{world['job'].uuid}/",
        "models": "/models/",
        "api docs": "/api/docs/",
    }


# Pages that show user text, and so must show the payload as literal text.
PAGES_WITH_USER_TEXT = {
    "home",
    "project",
    "dataset",
    "tomograms",
    "tomogram",
    "comparison",
    "scene",
    "anomaly run",
    "job",
}


@pytest.fixture
def stored(live_asgi, tmp_path):
    world = build_world(tmp_path)
    set_user_text(world)
    return world


def test_pages_escape_text_and_satisfy_csp(live_asgi, stored, new_context, screenshot):
    context = new_context()
    context.add_init_script(RECORD_VIOLATIONS)
    console_errors = []
    page = context.new_page()
    page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
    page.on("dialog", lambda dialog: dialog.dismiss())
    sign_in(page, live_asgi, "owner")

    problems = []
    for name, path in main_pages(stored).items():
        console_errors.clear()
        response = page.goto(live_asgi.url + path)
        assert response.status == 200, f"{name} page {path}: {response.status}"
        assert "script-src 'self' 'nonce-" in response.headers["content-security-policy"]
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(300)
        violations = page.evaluate("window.__cspViolations")
        if violations:
            problems.append(f"{name}: CSP violations {violations}")
        csp_console = [text for text in console_errors if "Content Security Policy" in text]
        if csp_console:
            problems.append(f"{name}: console {csp_console}")
        if page.evaluate("window.__xss") is not None:
            problems.append(f"{name}: user text ran as script ({page.evaluate('window.__xss')})")
        if name == "api docs":
            expect(page.locator(".swagger-ui .info")).to_be_visible()
        if name in PAGES_WITH_USER_TEXT and PAYLOAD not in page.locator("body").inner_text():
            screenshot(page, f"security-{name.replace(' ', '-')}")
            problems.append(f"{name}: the literal user text is not shown")
    assert problems == [], "\n".join(problems)


def test_upload_within_csp(live_asgi, stored, new_context, tmp_path):
    """The uploader hashes files with WebAssembly and sends chunks, all within the CSP."""
    context = new_context()
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    sign_in(page, live_asgi, "owner")
    page.goto(f"{live_asgi.url}/datasets/{stored['dataset'].uuid}/")
    note = tmp_path / "note.txt"
    note.write_text("plain text for the uploader\n")
    page.locator("[data-component=uploader] input[type=file]").set_input_files(str(note))
    expect(page.locator("table").get_by_text("note.txt")).to_be_visible(timeout=30_000)
    assert page.evaluate("window.__cspViolations") == []


def test_hypothesis_and_note_shown_literally(live_asgi, stored, new_context):
    context = new_context()
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    sign_in(page, live_asgi, "owner")
    page.goto(f"{live_asgi.url}/comparisons/{stored['comparison'].uuid}/")
    row = page.locator("tbody tr", has_text=PAYLOAD).first
    expect(row).to_be_visible()
    # Selecting the row draws its Plotly plot, which inserts styles and must stay within the CSP.
    row.click()
    expect(page.locator(".score-plot .main-svg").first).to_be_attached(timeout=15_000)
    assert page.evaluate("window.__cspViolations") == []
    page.goto(f"{live_asgi.url}/anomaly-runs/{stored['video_run'].uuid}/")
    expect(page.get_by_text(PAYLOAD).first).to_be_attached()
    assert page.evaluate("window.__xss") is None
