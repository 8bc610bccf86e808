"""The report's page in a real headless browser (Debian's Chromium, driven by Playwright).

Marked slow: a replay and a browser. Every request that is not the page's own
file is refused and recorded: the page must open offline.
"""

from __future__ import annotations

import json
import shutil

import pytest

from runners import cli
from tests.conftest import ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As the machine's browser tests run it: no background connections to refuse.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
pytestmark = pytest.mark.slow


def test_every_plot_renders_offline_without_a_console_error(tmp_path, redis_url):
    from PIL import Image
    from playwright.sync_api import sync_playwright

    events = tmp_path / "events.avro"
    args = ["generate", "--events", "4000", "--users", "100", "--seed", "3", "--out", str(events)]
    assert cli.main(args) == 0
    out = tmp_path / "report"
    code = cli.main(
        ["report", str(events), "--config", str(ROOT / "examples" / "config.yaml")]
        + ["--out", str(out), "--redis", redis_url, "--insecure-dev-key", "--quiet"]
        + ["--dead-letters", str(tmp_path / "dead")]
    )
    assert code == 0
    plots = json.loads((out / "report.json").read_text())["plots"]
    errors, refused = [], []
    with sync_playwright() as playwright:
        # A fresh profile of its own each launch (Playwright's temporary user data dir).
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            def route(request):
                if request.request.url.startswith("file://"):
                    request.continue_()
                else:
                    refused.append(request.request.url)
                    request.abort()

            page.route("**/*", route)
            page.goto((out / "index.html").as_uri())
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            figures = page.locator("figure[data-plot]")
            assert figures.count() == len(plots)
            for place in range(figures.count()):
                figure = figures.nth(place)
                name = figure.get_attribute("data-plot")
                svg = figure.locator("svg")
                box = svg.bounding_box()
                assert box and box["width"] > 100 and box["height"] > 100, name
                shot = tmp_path / f"{name}.png"
                svg.screenshot(path=str(shot))
                colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 16)
                # Drawn: more than a blank canvas's one or two colours.
                assert colours is None or len(colours) > 10, name
        finally:
            browser.close()
    assert errors == []
    assert refused == []
    assert Image.open(tmp_path / "page.png").size[1] > 2000
