"""Drive the web page of ``edmem serve`` in a real headless Chromium, as a person would: type a
question, press Ask, read what the page shows. Used by the browser test and by
``benchmarks/screenshot_serve.py`` (which writes docs/img/server.png).

Needs the ``playwright`` Python package (the ``dev`` extra) and a system Chromium (Debian package
``chromium``); Playwright's own browser downloads are never used (``executable_path``).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

CANDIDATES = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    """``$EDMEM_CHROMIUM``, else the first Chromium found (the Debian binary before its shell
    wrapper, which prints noise on some systems)."""
    explicit = os.environ.get("EDMEM_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    for name in CANDIDATES:
        found = name if Path(name).is_file() and os.access(name, os.X_OK) else shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageView:
    """What the page shows after a question was asked."""

    answer: str
    answer_meta: str
    top_k: list[tuple[str, str]]     # (name shown, percentage shown), best first
    highlighted: list[str]           # texts of the mentions marked in the question
    mention_note: str
    error: str | None


def ask_in_browser(url: str, question: str, *, top_k: int | None = None,
                   screenshot: str | Path | None = None, timeout_ms: int = 60_000,
                   width: int = 820) -> PageView:
    """Open ``url``, ask ``question`` through the form and return what the page shows; optionally
    save a PNG of the page."""
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    if executable is None:
        raise RuntimeError("no Chromium found (install the Debian package 'chromium' or set "
                           "EDMEM_CHROMIUM)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.set_default_timeout(timeout_ms)
            page.goto(url)
            page.wait_for_selector("body[data-ready]", state="attached")
            page.fill("#question", question)
            if top_k is not None:
                page.fill("#top-k", str(top_k))
            page.click("#ask")
            page.wait_for_selector("#result:not([hidden]), #error:not([hidden])")
            error = page.locator("#error")
            view = PageView(
                answer=page.inner_text("#answer"),
                answer_meta=page.inner_text("#answer-meta"),
                top_k=[(row.locator(".name").inner_text(), row.locator(".pct").inner_text())
                       for row in page.locator("#top-k-list .row").all()],
                highlighted=page.locator("#question-view mark.mention").all_inner_texts(),
                mention_note=page.inner_text("#mention-note"),
                error=error.inner_text() if error.is_visible() else None)
            if screenshot is not None:
                Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)
            return view
        finally:
            browser.close()
