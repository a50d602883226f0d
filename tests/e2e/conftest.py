"""Browser fixtures: Playwright driving Debian's Chromium (never a downloaded browser)."""

import os
import shutil
from pathlib import Path

import pytest

# Playwright's sync API keeps an event loop running in the test thread, and Django refuses
# database calls (fixtures, teardown flushes) from such a thread unless this variable is set.
# Server subprocesses never inherit this (tests/conftest.py removes it from their env).
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "var" / "screenshots"
# With DOCS_SCREENSHOTS=1, every screenshot is also written, small, into the user guides' images.
DOCS_IMAGE_DIR = Path(__file__).resolve().parents[2] / "docs" / "images"
DOCS_IMAGE_WIDTH = 800  # pixels


def chromium_path() -> str | None:
    configured = os.environ.get("CHROMIUM_PATH")
    if configured:
        return configured
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        pytest.fail("Chromium is not installed: run `make install-dev` (Debian package chromium) or set CHROMIUM_PATH.")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def new_context(browser):
    contexts = []

    def make(**options):
        context = browser.new_context(viewport={"width": 1366, "height": 768}, **options)
        context.set_default_timeout(20_000)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def screenshot():
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        path = SCREENSHOT_DIR / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        if os.environ.get("DOCS_SCREENSHOTS") == "1":
            save_docs_image(page, name)
        return path

    return take


def save_docs_image(page, name: str) -> Path:
    """Write the visible part of ``page`` as a small palette PNG into docs/images/."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(page.screenshot(full_page=False))).convert("RGB")
    height = round(image.height * DOCS_IMAGE_WIDTH / image.width)
    image = image.resize((DOCS_IMAGE_WIDTH, height), Image.Resampling.LANCZOS).quantize(colors=128)
    DOCS_IMAGE_DIR.mkdir(parents=True, exist_ok=True)
    path = DOCS_IMAGE_DIR / f"{name}.png"
    image.save(path, optimize=True)
    return path
