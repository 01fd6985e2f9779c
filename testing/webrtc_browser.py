"""Headless Chromium driven by Selenium, with a WAV file as its microphone.

Selenium's calls block, so the scenario runs each of them in a thread: the server under
test shares the scenario's event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import time
from pathlib import Path

from testing.fakes.chat_script import ScriptedCall, ScriptedReply
from testing.fakes.tool_webhook import ToolWebhook
from testing.speech import speech_pcm, write_wav
from testing.webrtc_stack import FIRST_REPLY, open_peer_connections, stack

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

    async def wait_stats(self, check, timeout: float, what: str) -> dict:
        """The page's stats (as `stats`), once `check` holds for them."""
        deadline = time.monotonic() + timeout
        while not check(stats := await self.stats()):
            if time.monotonic() > deadline:
                raise AssertionError(f"page: timed out waiting for {what}; stats: {stats}")
            await asyncio.sleep(0.1)
        return stats

    async def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        await self.run(self.driver.save_screenshot, str(path))

    async def quit(self) -> None:
        await self.run(self.driver.quit)


async def chromium(args: argparse.Namespace) -> dict:
    """The call page in headless Chromium, its microphone a spoken WAV: a spoken and a typed
    turn, hang-up, a call ended by closing the page, and the WebSocket fallback."""
    out: dict = {}
    work = Path(args.data_dir).resolve() / "chromium"
    wav = work / "speech.wav"
    wav.parent.mkdir(parents=True, exist_ok=True)
    # Leading silence: the microphone starts at getUserMedia, before ICE has connected.
    write_wav(wav, speech_pcm("What is the weather like today?", 48_000, 1, 2500, 1500), 48_000, 1)
    artifacts = Path(args.artifacts).resolve()
    # A server tool set with a webhook tool: the typed turn calls it, the page shows the call.
    hook = await ToolWebhook(b"browser-hook").__aenter__()
    tools_file = work / "tools.json"
    lookup = {"name": "lookup_order", "description": "Find an order.", "runs": "webhook",
              "url": hook.url + "lookup", "barge_in": "cancel"}  # fmt: skip
    tools_file.write_text(json.dumps({"tool_sets": {"default": [lookup]}}))
    hook.replies.append({"order": "42", "status": "shipped"})
    async with stack(
        args.database_url, tools_file=str(tools_file), tool_webhook_secret="browser-hook"
    ) as s:
        s.fake.transcripts.extend(["what is the weather like today", "hello again"])
        s.fake.chat_replies.extend(
            [
                FIRST_REPLY,
                ScriptedReply("", [ScriptedCall("lookup_order", {"order": "42"})]),
                "Here is my typed answer.",
            ]
        )
        page = Page(await asyncio.to_thread(start, wav, work / "profile"))
        # localhost: a secure context (microphone allowed); ICE still uses the veth addresses.
        url = f"http://localhost:{s.server.http_port}/client"
        try:
            await page.run(page.driver.get, url)
            await page.click("#call")
            await page.wait(
                "[...document.querySelectorAll('.msg.user')].some(e => e.textContent.includes("
                "'weather')) && [...document.querySelectorAll('.msg.agent')].some(e => "
                "e.textContent.includes('sunny'))",
                40,
                "the transcript and the agent's reply",
            )
            out["state_mid_call"] = (await page.texts("#state"))[0]
            await page.screenshot(artifacts / "webrtc_call.png")
            await page.wait("document.querySelector('.msg.agent .latency')", 20, "turn metrics")
            # The reply's audio plays out: the server's track has sent all of it (its queue
            # is empty), and the page has received as many packets as the track had sent then.
            drained = await s.wait_for_call(
                lambda c: (
                    c["agent_audio"]["speech_frames"] > 0 and c["agent_audio"]["queued_ms"] == 0
                ),
                20,
                "the server's track to send all of the reply's audio",
            )
            sent = drained["agent_audio"]["frames"]
            out["stats"] = await page.wait_stats(
                lambda st: st.get("packetsReceived", 0) >= sent,
                10,
                f"the page to receive the {sent} audio packets sent through the reply's end",
            )
            out["server_call"] = (await s.calls())["calls"][0]
            await page.js(
                "document.getElementById('text').value = 'Please answer in text';"
                "document.getElementById('send').click();"
            )
            await page.wait(
                "document.querySelectorAll('.msg.agent .latency').length >= 2", 20, "typed reply"
            )
            out["users"] = await page.texts(".msg.user")
            out["agents"] = await page.texts(".msg.agent")
            out["tools"] = await page.texts(".msg.tool")
            session_id = out["server_call"]["session_id"]
            await page.click("#hangup")
            out["hangup_cleanup_s"] = round(await s.wait_no_calls(), 2)
            out["hangup_row"] = await s.session_row(session_id)

            await page.click("#call")  # a second call, ended by leaving the page
            await page.wait(
                "document.getElementById('state').textContent === 'listening'", 20, "listening"
            )
            session_id = (await s.calls())["calls"][0]["session_id"]
            await page.run(page.driver.get, "about:blank")
            out["page_close_cleanup_s"] = round(await s.wait_no_calls(), 2)
            out["page_close_row"] = await s.session_row(session_id)

            await page.run(page.driver.get, url + "?transport=ws")  # the fallback
            await page.click("#call")
            await page.wait(
                "document.querySelector('.msg.user') && document.querySelector('.msg.agent .latency')",
                40,
                "a turn over the WebSocket",
            )
            out["ws_transport"] = (await page.texts("#transport"))[0]
            out["ws_users"] = await page.texts(".msg.user")
            out["ws_agents"] = await page.texts(".msg.agent")
            await page.screenshot(artifacts / "websocket_call.png")
            await page.click("#hangup")
        finally:
            await page.quit()
            await hook.__aexit__(None, None, None)
        out["open_peer_connections"] = open_peer_connections()
        out["live_sessions"] = len(s.server.live)
    return out
