"""Headless Chromium driven by Selenium, with a WAV file as its microphone.

Selenium's calls block, so the scenario runs each of them in a thread: the server under
test shares the scenario's event loop.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def missing() -> str | None:
    """Why Chromium cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists() and shutil.which(Path(path).name) is None:
            return f"{path} is missing (make browser installs chromium and chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed"
    return None


def start(wav: Path, profile: Path):
    """A fresh headless Chromium whose microphone plays `wav` once, then silence."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--disable-dev-shm-usage",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
        "--autoplay-policy=no-user-gesture-required",
        f"--user-data-dir={profile}",
        "--window-size=900,900",
    ):
        options.add_argument(arg)
    service = Service(executable_path=shutil.which("chromedriver") or CHROMEDRIVER)
    return webdriver.Chrome(options=options, service=service)


class Page:
    """The call page in a browser, with async helpers over Selenium's blocking calls."""

    def __init__(self, driver) -> None:
        self.driver = driver

    async def run(self, fn, *args):
        return await asyncio.to_thread(fn, *args)

    async def js(self, script: str, *args):
        return await self.run(self.driver.execute_script, script, *args)

    async def js_async(self, script: str):
        """Run `script` with `done` bound to the result callback."""
        wrapped = f"const done = arguments[arguments.length - 1]; {script}"
        return await self.run(self.driver.execute_async_script, wrapped)

    async def wait(self, condition: str, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not await self.js(f"return Boolean({condition});"):
            if time.monotonic() > deadline:
                text = await self.js("return document.body.innerText;")
                raise AssertionError(f"page: timed out waiting for {what}; page shows:\n{text}")
            await asyncio.sleep(0.1)

    async def click(self, css: str) -> None:
        await self.js(f"document.querySelector({css!r}).click();")

    async def texts(self, css: str) -> list[str]:
        return await self.js(
            f"return [...document.querySelectorAll({css!r})].map(e => e.textContent);"
        )

    async def stats(self) -> dict:
        """The agent audio's inbound-rtp stats from the page's peer connection."""
        return await self.js_async("window.voiceAgent.stats().then(s => done(s));")

    async def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        await self.run(self.driver.save_screenshot, str(path))

    async def quit(self) -> None:
        await self.run(self.driver.quit)
