"""The tomograms app in a real Chromium: upload, run, views, query forms, question, exports, sharing."""

import io
import re
import zipfile

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.conftest import start_worker
from tests.e2e.conftest import CHROMIUM_ARGS, chromium_path
from tests.e2e.test_platform import sign_in
from tests.web.test_jobs import kill_process_tree
from tests.web.tomogram_data import SHAPE, known_run, write_simulated_mrc

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# These flags let WebGL run on SwiftShader, Chromium's software renderer, because the test
# machines have no GPU.
WEBGL_ARGS = [*CHROMIUM_ARGS, "--enable-unsafe-swiftshader", "--use-angle=swiftshader"]


@pytest.fixture(scope="module")
def browser(browser):
    """A second Chromium from the same Playwright instance, started with WebGL allowed."""
    webgl_browser = browser.browser_type.launch(executable_path=chromium_path(), args=WEBGL_ARGS, headless=True)
    yield webgl_browser
    webgl_browser.close()


@pytest.fixture
def worker(live_asgi):
    process = start_worker("gpu", "default", burst=False)
    yield process
    kill_process_tree(process)


def canvas_pixels(page, selector: str) -> np.ndarray:
    image = Image.open(io.BytesIO(page.locator(selector).screenshot())).convert("RGB")
    return np.asarray(image).astype(int)


def coloured_fraction(pixels: np.ndarray) -> float:
    """Return the fraction of pixels that are saturated colour, not white, grey or black."""
    spread = pixels.max(axis=2) - pixels.min(axis=2)
    return float((spread > 60).mean())


def run_form(page, tool: str, fields: dict):
    form = page.locator(f"section.tool[data-tool={tool}]")
    for name, value in fields.items():
        control = form.locator(f"[name={name}]")
        if control.evaluate("element => element.tagName") == "SELECT":
            control.select_option(value)
        else:
            control.fill(str(value))
    form.get_by_role("button", name=re.compile("^Run ")).click()
    expect(form.locator(".query-result")).to_be_visible(timeout=30_000)
    expect(form.locator(".error")).to_have_count(0)
    return form


def test_tomogram_upload_run_explore_share(live_asgi, worker, personas, new_context, screenshot, tmp_path):
    mrc_path, truth_path = write_simulated_mrc(tmp_path)
    page = new_context(accept_downloads=True).new_page()
    sign_in(page, live_asgi, "owner")
    page.get_by_role("link", name="Cell biology").click()
    page.get_by_role("link", name="Open the tomograms of this project").click()

    page.locator("input[name=volumes]").set_input_files(str(mrc_path))
    preview = page.locator("[data-component=mrc-header-preview]")
    expect(preview.get_by_text("96 × 96 × 48")).to_be_visible()
    expect(preview.get_by_text("2 (float32)")).to_be_visible()
    expect(preview.get_by_text("10 × 10 × 10 Å")).to_be_visible()
    page.locator("input[name=references]").set_input_files(str(truth_path))
    screenshot(page, "tomogram-upload-preview")
    page.get_by_role("button", name="Upload").click()

    expect(page.get_by_role("heading", name="sim.mrc")).to_be_visible()
    expect(page.locator(".mrc-header")).to_contain_text("96 × 96 × 48 voxels")
    expect(page.get_by_text("6 particles from truth.csv")).to_be_visible()
    screenshot(page, "tomogram-detail")
    page.get_by_role("button", name="Start run").click()

    run_view = page.locator(".tomogram-run")
    expect(run_view).to_have_attribute("data-view", "ready", timeout=120_000)
    particle_count = int(run_view.get_attribute("data-particles"))
    assert particle_count > 0, "the run kept no particles, so the views and queries have nothing to show"
    page.wait_for_timeout(500)
    pixels = canvas_pixels(page, ".view3d canvas")
    assert pixels.std() > 5, "the 3D canvas is blank"
    assert coloured_fraction(pixels) > 0.001, "the 3D canvas shows no coloured particles"
    expect(page.locator(".slice-canvas")).to_have_attribute("data-z", str(SHAPE[0] // 2))
    expect(page.locator("table.evaluation")).to_be_visible()
    screenshot(page, "tomogram-run")

    points = page.evaluate("window.biovlm.tomogramRun.points")
    names = [points["class_names"][index] for index in points["class_indices"]]
    counts = {name: names.count(name) for name in set(names)}
    first_class = max(counts, key=counts.get)

    # Filters: hiding the most common class updates the table.
    page.locator(f"tr[data-class={first_class}] input[type=checkbox]").uncheck()
    expect(page.locator(".shown-total")).to_have_text(str(particle_count - counts[first_class]))
    page.locator(f"tr[data-class={first_class}] input[type=checkbox]").check()
    expect(page.locator(".shown-total")).to_have_text(str(particle_count))

    # Clicking a particle in the 3D view shows its details and subtomogram slices.
    position = page.evaluate("window.biovlm.tomogramRun.scene.screenPosition(0)")
    page.locator(".view3d canvas").click(position={"x": position["x"], "y": position["y"]})
    panel = page.locator(".particle-panel")
    expect(panel.locator(".particle-id")).to_have_text(re.compile(r"^\d+$"))
    expect(panel.locator(".subtomogram img")).to_have_count(3)

    form = run_form(page, "neighbors", {"particle_id": points["ids"][0], "radius_angstrom": 5000})
    expect(page.get_by_text(re.compile(r"particles? highlighted by the last query"))).to_be_visible()
    run_form(page, "region_composition", {"shape": "tomogram"})
    if counts[first_class] >= 2:
        run_form(page, "nearest_neighbor_distances", {"class_a": first_class, "simulations": 19})
    else:
        other = next(name for name in counts if name != first_class)
        run_form(page, "nearest_neighbor_distances", {"class_a": first_class, "class_b": other, "simulations": 19})
    run_form(page, "clusters", {"class_name": first_class, "link_distance_angstrom": 2000, "min_size": 1})
    screenshot(page, "tomogram-run-queries")

    # An invalid value gets the server's message, with the field's label, and marks the field.
    form.locator("[name=radius_angstrom]").fill("-3")
    form.get_by_role("button", name=re.compile("^Run ")).click()
    expect(form.locator(".error")).to_contain_text("Radius (Å)")
    expect(form.locator(".error")).not_to_contain_text("radius_angstrom")
    expect(form.locator("label.invalid")).to_contain_text("Radius (Å)")
    # The failed query clears the previous result, which no longer answers the form.
    expect(form.locator(".query-result")).to_have_count(0)

    # A point that is not three numbers fails in the page, and also clears the result.
    form.locator("[name=radius_angstrom]").fill("300")
    form.get_by_role("button", name=re.compile("^Run ")).click()
    expect(form.locator(".query-result")).to_have_count(1)
    form.locator("[name=particle_id]").fill("")
    form.locator("[name=point]").fill("1 2")
    form.get_by_role("button", name=re.compile("^Run ")).click()
    expect(form.locator(".error")).to_contain_text("Centre point x, y, z (Å): enter three numbers")
    expect(form.locator(".query-result")).to_have_count(0)

    page.locator("input[name=question]").fill("what is the composition of the tomogram?")
    page.get_by_role("button", name="Ask").click()
    expect(page.locator(".tool-call")).to_contain_text("region_composition")
    expect(page.locator(".answer .query-result")).to_contain_text(f"{particle_count} particles")

    for export_format in ("star4", "star5", "copick", "csv"):
        with page.expect_download() as download_info:
            page.locator(f"a[data-export={export_format}]").click()
        path = download_info.value.path()
        content = open(path, "rb").read()
        assert content, export_format
        if export_format == "copick":
            assert zipfile.ZipFile(path).namelist()
        elif export_format == "csv":
            assert content.decode().count("\n") == particle_count + 2
        else:
            assert b"data_particles" in content

    page.fill("input[name=label]", "for <collaborator>")
    page.get_by_role("button", name="Create share link").click()
    share_url = page.locator("input.share-url").first.input_value()
    visitor = new_context().new_page()
    visitor.goto(share_url)
    expect(visitor.get_by_text("You are viewing a shared, read-only result.")).to_be_visible()
    expect(visitor.locator(".tomogram-run")).to_have_attribute("data-view", "ready", timeout=30_000)
    expect(visitor.get_by_role("button", name="Create share link")).to_have_count(0)
    run_form(visitor, "region_composition", {"shape": "tomogram"})
    screenshot(visitor, "tomogram-run-shared")


@pytest.mark.parametrize("count", [100_000, 5_000])
def test_3d_view_frame_rate(live_asgi, personas, client, new_context, tmp_path, count):
    from analysis.cryoet.classes import CLASS_NAMES
    from tests.web.tomogram_data import upload_tomogram

    mrc_path, _ = write_simulated_mrc(tmp_path)
    client.force_login(personas["owner"])
    upload_tomogram(client, personas["project"], mrc_path)
    from biovlm_web.tomograms.models import Tomogram

    rng = np.random.default_rng(0)
    # The particles fill the bounds of a full-size benchmark tomogram (630 x 630 x 184 voxels at
    # 10 Å), so they are as small on screen as in real data. The slices stay those of the small file.
    extent = np.array([6300.0, 6300.0, 1840.0])
    particles = [
        (CLASS_NAMES[index], tuple(position), float(score))
        for index, position, score in zip(
            rng.integers(0, len(CLASS_NAMES), count),
            rng.uniform(0, extent, (count, 3)),
            rng.uniform(0, 1, count),
            strict=True,
        )
    ]
    run = known_run(Tomogram.objects.get(), personas["owner"], particles=particles, extent=extent)

    page = new_context().new_page()
    sign_in(page, live_asgi, "owner")
    page.goto(f"{live_asgi.url}/tomogram-runs/{run.uuid}/")
    run_view = page.locator(".tomogram-run")
    expect(run_view).to_have_attribute("data-view", "ready", timeout=60_000)
    assert run_view.get_attribute("data-particles") == str(count)
    corners = page.evaluate(
        """(({ scene, points }) => {
            const [low, high] = points.bounds
            const corners = []
            for (const x of [low[0], high[0]]) for (const y of [low[1], high[1]]) for (const z of [low[2], high[2]])
                corners.push(scene.projectPoint(x, y, z))
            const rect = scene.renderer.domElement.getBoundingClientRect()
            return { corners, width: rect.width, height: rect.height }
        })(window.biovlm.tomogramRun)"""
    )
    for corner in corners["corners"]:
        assert 0 <= corner["x"] <= corners["width"], f"a box corner is cut off the 3D view: {corner}"
        assert 0 <= corner["y"] <= corners["height"], f"a box corner is cut off the 3D view: {corner}"
    fps = page.evaluate("window.biovlm.tomogramRun.measureFps(3000)")
    mode = "impostors" if page.evaluate("window.biovlm.tomogramRun.scene.impostors") else "instanced spheres"
    print(
        f"\n3D view of {count} particles as {mode} (Chromium, SwiftShader): "
        f"{fps['interactive']:.1f} frames per second while orbiting ({fps['drawnWhileMoving']} drawn), "
        f"{fps['full']:.1f} with all drawn"
    )
    assert 0 < fps["drawnWhileMoving"] < count
    drawn = "(({ scene }) => scene.impostors ? scene.object.geometry.drawRange.count : scene.object.count)(window.biovlm.tomogramRun)"
    assert page.evaluate(drawn) == count, "the full set is not drawn again after the camera stops"

    # A real drag: the reduced set while the button is down, everything after release.
    box = page.locator(".view3d canvas").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 60, box["y"] + box["height"] / 2 + 20, steps=5)
    assert page.evaluate(drawn) == fps["drawnWhileMoving"]
    page.mouse.up()
    assert page.evaluate(drawn) == count
    pixels = canvas_pixels(page, ".view3d canvas")
    assert coloured_fraction(pixels) > 0.01, "the 3D canvas shows no coloured particles"
