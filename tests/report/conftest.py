"""The quick demo report (written once per test session, shared by xdist workers) and a headless Chromium.

The browser is the system's (Debian ``chromium`` + ``chromium-driver``, which scripts/test.sh
installs), driven by Selenium with an explicit driver path, so nothing is downloaded. Without
them the browser tests skip, unless ``DLDEBUG_REQUIRE_BROWSER=1`` (set by scripts/test.sh)
turns the skip into a failure.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dldebug.cli.app import main

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-default-apps", "--disable-extensions", "--mute-audio")


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    """Where the browser tests leave their screenshots (git-ignored), for a person to look at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """(folder, exit status) of ``dldebug demo --quick``, run once even under pytest-xdist."""
    root = tmp_path_factory.getbasetemp()
    shared = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root
    out = shared / "dldebug-quick-demo"
    with open(shared / "dldebug-quick-demo.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first worker runs the demo, the others wait and reuse it
        status_file = out / "exit-status"
        if not status_file.is_file():
            status = main(["demo", "--quick", "--out", str(out)])
            status_file.write_text(str(status))
    return out, int(status_file.read_text())


def _find(name: str, *candidates: str) -> str | None:
    for candidate in (os.environ.get(name), *candidates):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@pytest.fixture(scope="session")
def chromium() -> Iterator[Callable[[int], Any]]:
    """A factory of headless Chromium drivers at a given window width (each with a fresh profile)."""
    required = os.environ.get("DLDEBUG_REQUIRE_BROWSER") == "1"
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        if required:
            raise
        pytest.skip("selenium is not installed (pip install 'dldebug[dev]')")
    binary = _find("DLDEBUG_CHROMIUM", "/usr/bin/chromium", shutil.which("chromium") or "")
    driver_path = _find("DLDEBUG_CHROMEDRIVER", "/usr/bin/chromedriver", shutil.which("chromedriver") or "")
    if binary is None or driver_path is None:
        if required:
            pytest.fail("chromium and chromium-driver are required (apt-get install chromium chromium-driver)")
        pytest.skip("chromium / chromedriver not installed (apt-get install chromium chromium-driver)")
    drivers: list[Any] = []
    profiles: list[str] = []

    def start(width: int) -> Any:
        options = webdriver.ChromeOptions()
        options.binary_location = binary
        profile = tempfile.mkdtemp(prefix="dldebug-chromium-")
        profiles.append(profile)
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},900"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        driver = webdriver.Chrome(options=options, service=Service(driver_path))
        driver.set_page_load_timeout(60)
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600})
        drivers.append(driver)
        return driver

    yield start
    for driver in drivers:
        driver.quit()
    for profile in profiles:
        shutil.rmtree(profile, ignore_errors=True)
