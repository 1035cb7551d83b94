"""What a user sees: the executed quickstart opened in JupyterLab in a real (headless) Chromium.

Asserts from the DOM that the re-run diff, the comparison table and the training-curve image render,
and saves screenshots to artifacts/browser/. Needs Debian's chromium (installed by .ci/run).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "browser"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-proxy-server"]
LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the server is local: never a proxy


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def jupyterlab(executed_quickstart, tmp_path):
    import nbformat

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's chromium package (.ci/run does).")
    nbformat.write(executed_quickstart, tmp_path / "quickstart.ipynb")
    port, token = free_port(), secrets.token_hex(16)
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}", "--ServerApp.open_browser=False",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--allow-root"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "JUPYTER_PLATFORM_DIRS": "1"})
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 90
        while True:
            try:
                LOOPBACK.open(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError("JupyterLab did not start") from None
                time.sleep(0.5)
        yield url, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def test_quickstart_renders_in_jupyterlab(jupyterlab):
    from playwright.sync_api import sync_playwright

    url, token = jupyterlab
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/lab/tree/quickstart.ipynb?token={token}", timeout=90_000)
            page.wait_for_selector(".jp-Notebook .jp-OutputArea-output", timeout=90_000)
            page.wait_for_timeout(3000)
            page.screenshot(path=str(SHOTS / "quickstart-top.png"))
            checks = {"diff view": ".ftpe-diff ins, .ftpe-diff del", "compare table": ".ftpe-compare-table",
                      "training curves": "img[alt='training curves']", "accuracy chart": "img[alt='accuracy chart']"}
            found = {}
            for name, selector in checks.items():
                element = page.locator(selector).first
                element.wait_for(state="attached", timeout=30_000)
                element.scroll_into_view_if_needed()
                page.wait_for_timeout(500)
                found[name] = element.is_visible()
                element.screenshot(path=str(SHOTS / f"{name.replace(' ', '-')}.png"))
            assert found == dict.fromkeys(checks, True)
            curve = page.locator("img[alt='training curves']").first
            assert curve.evaluate("img => img.naturalWidth") > 300
            assert page.locator("text=Error displaying widget").count() == 0
        finally:
            browser.close()
