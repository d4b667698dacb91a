"""The keyboard page in headless Chromium: what it shows is what ``experiments.suggest`` says."""

import pytest

from lmjax.infer.live import LiveKeyboard
from lmjax.infer.serve import ServerThread, create_app
from tests.conftest import need_chromium
from tests.infer.test_commands import call

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
QUOTE = "That which does not kill us makes us stronger."


@pytest.fixture(scope="module")
def page_of_two(tiny_loaded):
    """The page of two keyboards side by side: one model with the whole text as context and
    with its 40-character window (they differ; two runs are shown the same way)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = need_chromium()
    kbs = {"stream": LiveKeyboard(tiny_loaded, n=3),
           "window": LiveKeyboard(tiny_loaded, n=3, context=0)}
    for kb in kbs.values():
        kb.warm_up()
    with ServerThread(create_app(kbs)) as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=ARGS)
        try:
            page = browser.new_page()
            page.goto(url)
            yield page
        finally:
            browser.close()


def shown(page, m: int, text: str) -> list[str]:
    """The words model ``m``'s column shows, once it shows the suggestions for ``text``."""
    page.wait_for_selector(f"#model-{m}[data-text={text!r}]", timeout=15000)
    return page.locator(f"#model-{m} li .word").all_inner_texts()


def test_typing_in_the_page_shows_the_commands_suggestions(page_of_two, tiny_run, capsys,
                                                           monkeypatch):
    page = page_of_two
    typed = QUOTE[:16]  # "That which does "
    box = page.locator("#text")
    box.press_sequentially(typed, delay=30)  # a key at a time
    for m, context in enumerate(("stream", "0")):
        _, out, _ = call("suggest", [f"run={tiny_run}", f"text={typed}", "n=3",
                                     f"context={context}"], capsys, monkeypatch)
        assert shown(page, m, typed) == out.strip().split(" | ")
    assert page.locator("#model-1 h2").inner_text() == "window"
    first = shown(page, 0, typed)[0]
    box.press("Tab")
    assert box.input_value() == typed + first
    shown(page, 0, typed + first)
    assert page.locator("#typed").inner_text() == str(len(typed) + 1)
    assert page.locator("#saved").inner_text() == str(len(first) - 1)
