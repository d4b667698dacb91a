"""The keyboard server: its JSON API, bad input, a short load test and a real browser."""

import json

import httpx
import pytest

from lmjax.infer.live import LiveKeyboard
from lmjax.infer.loadtest import load_test
from lmjax.infer.serve import ServerThread, create_app
from tests.infer.test_commands import call

QUOTE = "that which does not kill us makes us stronger."


@pytest.fixture(scope="module")
def app(tiny_loaded):
    kb = LiveKeyboard(tiny_loaded, n=3)
    kb.warm_up()
    return create_app({"tiny": kb}, max_chars=100)


@pytest.fixture(scope="module")
def server(app):
    with ServerThread(app) as url:  # uvicorn on a free port of 127.0.0.1
        yield url


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server, timeout=30) as c:
        yield c


def test_suggest_api_gives_the_commands_suggestions(client, tiny_run, capsys, monkeypatch):
    for text in ("", QUOTE[:13], QUOTE[:9]):
        r = client.post("/api/suggest", json={"text": text})
        assert r.status_code == 200
        body = r.json()
        assert body["kind"] == ("completion" if text and text[-1].isalpha() else "next_word")
        (m,) = body["models"]
        words = [c["word"] for c in m["completions"]]
        _, out, _ = call("suggest", [f"run={tiny_run}", f"text={text}", "n=3"], capsys,
                         monkeypatch)
        assert out.strip().split(" | ") == words
        probs = [c["prob"] for c in m["completions"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1
        assert all(c["word"] == body["partial"] + c["suffix"] for c in m["completions"])
        assert m["latency_ms"] > 0 and body["latency_ms"] >= m["latency_ms"]
    tut = client.post("/api/suggest", json={"text": "jack and ji", "method": "tutorial"})
    assert tut.status_code == 200 and len(tut.json()["models"][0]["completions"]) == 3
    assert client.get("/api/models").json() == {"models": ["tiny"], "n": 3, "max_chars": 100}
    assert "<textarea" in client.get("/").text


@pytest.mark.parametrize("request_args, status, words", [
    (dict(content=json.dumps({"text": "a" * 101})), 413, "limit is 100"),
    (dict(content=b'{"text": "jack \xff\xfe"}'), 400, "not UTF-8"),
    (dict(json={"text": "jack \u00e9t\u00e9"}), 422, "not in the vocabulary"),
    (dict(content=b'{"text": "jack'), 400, "malformed JSON"),
    (dict(json={"txt": "jack"}), 422, '{"text": "..."}'),
    (dict(json=["jack"]), 422, '{"text": "..."}'),
    (dict(json={"text": "jack", "method": "magic"}), 422, "unknown method 'magic'"),
    (dict(method="GET"), 405, "Method Not Allowed"),
    (dict(method="PUT", json={"text": "a"}), 405, "Method Not Allowed"),
    (dict(url="/api/nothing"), 404, "Not Found"),
])
def test_bad_requests_get_a_one_line_json_error_and_serving_goes_on(client, request_args,
                                                                     status, words):
    args = {"method": "POST", "url": "/api/suggest", **request_args}
    r = client.request(args.pop("method"), args.pop("url"), **args)
    assert r.status_code == status and r.headers["content-type"] == "application/json"
    err = r.json()["error"]
    assert words in err and "\n" not in err
    ok = client.post("/api/suggest", json={"text": "jack and j"})  # still serving
    assert ok.status_code == 200 and ok.json()["models"][0]["completions"]


def test_short_load_test_has_no_errors(server):
    r = load_test(server, clients=5, seconds=2)
    assert r["errors"] == 0 and r["requests"] >= 10
    assert r["requests_per_s"] > 0 and 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]


@pytest.mark.parametrize("args, words", [
    ([], "give run=RUN_DIR or runs=RUN_A,RUN_B"),
    (["run=a", "runs=b,c"], "(one of them)"),
    (["runs=a,a"], "names a run twice"),
    (["run=/nonexistent/run"], "does not exist"),
    (["run=x", "port=http"], "port='http' is not a valid int"),
    (["run=x", "min_suffix=-1"], "min_suffix='-1' is not a valid count"),
])
def test_serve_argument_errors_are_one_line(args, words, capsys, monkeypatch):
    code, _, err = call("serve", args, capsys, monkeypatch)
    assert code == 2 and err.startswith("lmjax: error:") and words in err
    assert len(err.strip().splitlines()) == 1


def test_loadtest_needs_one_target(capsys, monkeypatch):
    code, _, err = call("loadtest", ["clients=2"], capsys, monkeypatch)
    assert code == 2 and "give url=" in err and len(err.strip().splitlines()) == 1



def test_unknown_counts_only_complete_words_of_a_word_model(tiny_loaded):
    from types import SimpleNamespace

    from lmjax.data.vocab import Vocab

    kb = LiveKeyboard(tiny_loaded)
    assert kb.unknown("jack \u00e9t\u00e9 ji") == ["\u00e9"]  # char model: every character
    words = SimpleNamespace(vocab=Vocab("word", ("<pad>", "<unk>", "jack", "and", "jill")),
                            lowercase=True)
    assert LiveKeyboard.unknown(words, "Jack and zebra ji") == ["zebra"]  # "ji" is being typed
