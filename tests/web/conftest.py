"""One headless Chromium for the page tests; a context (own storage, own network guard) per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.web.browser import CHROMIUM, CHROMIUM_ARGS, Watch


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        await chromium.close()


@pytest.fixture
async def watch() -> Watch:
    return Watch()


@pytest.fixture
async def page(browser: Browser, watch: Watch) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1400, "height": 860}, locale="zh-CN")
    await watch.attach(context)
    page = await context.new_page()
    page.set_default_timeout(15000)  # software WebGL on two shared cores, yet a missing element fails soon
    watch.page(page)
    yield page
    await context.close()
