"""The page in headless Chromium (Debian's `chromium`, `chromium-driver`): run an example, then view it as a phone.

Screenshots go to the test's temporary directory, and also to $AGEGENDER_SCREENSHOT_DIR when set.
"""

from __future__ import annotations

import base64
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(f"needs {CHROMIUM} and {CHROMEDRIVER}: apt-get install chromium chromium-driver",
                allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install selenium)")

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # app.py lives at the repository root, outside the package

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

import app  # noqa: E402

# Flags that let Chromium run as root in a container, without a GPU and without calling home.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,1700"]


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def save_screenshot(driver, path: Path) -> None:
    """Save a PNG of the whole page (checked non-trivial), and a copy to $AGEGENDER_SCREENSHOT_DIR if set."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot",
                                  {"format": "png", "captureBeyondViewport": True, "clip": clip})
    path.write_bytes(base64.b64decode(shot["data"]))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
    if os.environ.get("AGEGENDER_SCREENSHOT_DIR"):
        shutil.copy(path, Path(os.environ["AGEGENDER_SCREENSHOT_DIR"]) / path.name)


def test_run_an_example_then_view_on_a_phone(server, browser, tmp_path):
    wait = WebDriverWait(browser, 60)
    browser.get(server)
    examples = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "button.gallery-item"))
    assert len(examples) == len(app.example_photos())
    next(e for e in examples if "five_faces" in e.get_attribute("innerHTML")).click()
    wait.until(lambda d: any("five_faces" in img.get_attribute("src")
                             for img in d.find_elements(By.CSS_SELECTOR, "#photo img")))
    browser.find_element(By.ID, "run").click()

    comparison = wait.until(lambda d: "custom vs vgg16" in d.find_element(By.ID, "comparison").text
                            and d.find_element(By.ID, "comparison"))
    assert "they agree on gender for every face" in comparison.text  # the same model in both columns
    for key in ("custom", "vgg16"):
        image = browser.find_element(By.CSS_SELECTOR, f"#annotated-{key} img")
        assert "gradio_api/file=" in image.get_attribute("src")
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) == 640
        rows = browser.find_elements(By.CSS_SELECTOR, f"#table-{key} [role=row][data-index]")
        assert len(rows) == 5 and "%" in rows[0].text
    save_screenshot(browser, tmp_path / "app-desktop.png")

    # A phone-sized screen: nothing wider than the screen, and the model columns stack.
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
    try:
        wait.until(lambda d: d.execute_script("return window.innerWidth") == 390)
        assert browser.execute_script("return document.documentElement.scrollWidth") <= 390
        custom, vgg = (browser.find_element(By.ID, f"col-{key}").rect for key in ("custom", "vgg16"))
        assert vgg["y"] >= custom["y"] + custom["height"] - 1 and abs(vgg["x"] - custom["x"]) < 1
        assert custom["width"] <= 390
        save_screenshot(browser, tmp_path / "app-phone.png")
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
