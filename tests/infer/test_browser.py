"""The keyboard page in headless Chromium: what it shows is what ``experiments.suggest`` says."""

import pytest

from lmjax.infer.serve import ServerThread, create_app, load_keyboards
from tests.conftest import need_chromium
from tests.infer.conftest import train_tiny
from tests.infer.test_commands import call

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
QUOTE = "That which does not kill us makes us stronger."


@pytest.fixture(scope="module")
def second_run(tmp_path_factory):
    """Another model of the same text (another seed and size): its suggestions differ."""
    return train_tiny(tmp_path_factory.mktemp("live2") / "other", seed=1, hidden=16)


@pytest.fixture(scope="module")
def page_of_two(tiny_run, second_run):
    """The page of two runs side by side, loaded as ``experiments.serve runs=A,B`` loads them."""
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = need_chromium()
    kbs = load_keyboards(None, f"{tiny_run},{second_run}", n=3)
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


def test_typing_in_the_page_shows_the_commands_suggestions(page_of_two, tiny_run, second_run,
                                                           capsys, monkeypatch):
    page = page_of_two
    typed = QUOTE[:16]  # "That which does "
    box = page.locator("#text")
    box.press_sequentially(typed, delay=30)  # a key at a time
    columns = []
    for m, run in enumerate((tiny_run, second_run)):
        _, out, _ = call("suggest", [f"run={run}", f"text={typed}", "n=3"], capsys,
                         monkeypatch)
        columns.append(shown(page, m, typed))
        assert columns[-1] == out.strip().split(" | ")
    assert page.locator("#model-1 h2").inner_text() == str(second_run)
    assert columns[0] != columns[1]  # two models, two columns of their own
    first = shown(page, 0, typed)[0]
    box.press("Tab")
    assert box.input_value() == typed + first
    shown(page, 0, typed + first)
    assert page.locator("#typed").inner_text() == str(len(typed) + 1)
    assert page.locator("#saved").inner_text() == str(len(first) - 1)
