"""`rnnseq serve`: the API, batching across requests, limits and errors."""

import asyncio
import os
import socket
import subprocess
import sys
import time

import pytest

pytest.importorskip("fastapi", reason="rnnseq serve needs the [serve] extra")
import httpx  # noqa: E402

from rnnseq.cli import main  # noqa: E402
from rnnseq.inference.translator import load  # noqa: E402
from rnnseq.serve.batcher import Batcher, QueueFull  # noqa: E402

from .conftest import serve_in_process  # noqa: E402
from .test_cli import CONFIG, PAIRS  # noqa: E402

INPUTS = ["abc", "cab", "bca", "aab", "ccba", "a", "bacab"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve")
    (d / "train.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in PAIRS))
    (d / "valid.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in PAIRS[:3]))
    (d / "config.yaml").write_text(CONFIG.format(d=d))
    assert main(["-q", "train", str(d / "config.yaml"), "--set", "train.max_steps=30"]) == 0
    return d / "model" / "best"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir, log_path, *options):
    """`rnnseq serve` in a subprocess on a free loopback port, once it is ready: (proc, url).
    Its output goes to a file: a pipe could fill up."""
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rnnseq", "-q", "serve", f"toy={model_dir}",
             "--port", str(port), *options],
            env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(log_path.read_text())


@pytest.fixture(scope="module")
def server(model_dir):
    log = model_dir.parent.parent / "server.log"
    proc, url = start_server(model_dir, log, "--max-lines", "50", "--max-chars", "2000",
                             "--max-wait-ms", "20")
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    assert "Traceback" not in log.read_text()


def test_health_ready_and_models(server):
    assert httpx.get(server + "/health").json() == {"status": "ok"}
    assert httpx.get(server + "/ready").json() == {"status": "ready", "models": ["toy"]}
    (info,) = httpx.get(server + "/v1/models").json()["models"]
    assert info["name"] == "toy" and info["model"]["cell"] == "gru"
    assert info["vocabulary"]["source"] > 4 and info["decoding"]["beam_size"] == 3
    assert "/v1/translate" in httpx.get(server + "/openapi.json").json()["paths"]


@pytest.mark.parametrize("beam, n_best", [(1, 1), (3, 2)])
def test_outputs_equal_the_translator(server, model_dir, beam, n_best):
    body = {"text": INPUTS, "beam_size": beam, "n_best": n_best, "return_scores": True}
    got = httpx.post(server + "/v1/translate", json=body).json()
    expected = load(str(model_dir)).translate_nbest(INPUTS, beam_size=beam, n_best=n_best)
    assert got["model"] == "toy" and len(got["translations"]) == len(INPUTS)
    for out, hyps in zip(got["translations"], expected, strict=True):
        assert out["text"] == hyps[0].text
        assert out["score"] == pytest.approx(hyps[0].score, abs=1e-5)
        if n_best > 1:
            assert [h["text"] for h in out["n_best"]] == [h.text for h in hyps]


def test_sampling_and_prefixes_as_the_translator_does_them(server, model_dir):
    from rnnseq.inference.sampling import Sampling

    translator = load(str(model_dir))
    body = {"text": INPUTS, "sample": True, "n_best": 3, "seed": 4, "top_k": 5,
            "temperature": 1.5, "return_scores": True}
    got = httpx.post(server + "/v1/translate", json=body).json()["translations"]
    expected = translator.translate_nbest(INPUTS, n_best=3,
                                          sampling=Sampling(5, 1.0, 1.5, 4))
    for out, hyps in zip(got, expected, strict=True):
        assert [h["text"] for h in out["n_best"]] == [h.text for h in hyps]
    # line i of a request draws from stream i, whatever else is in the batch
    alone = httpx.post(server + "/v1/translate", json={**body, "text": INPUTS[:1]}).json()
    alone = alone["translations"][0]["n_best"]
    assert [h["text"] for h in alone] == [h["text"] for h in got[0]["n_best"]]
    assert [h["score"] for h in alone] == pytest.approx([h["score"] for h in got[0]["n_best"]],
                                                        abs=1e-5)
    prefixes = ["a", "", "b", "a", "c", "", "b"]
    got = httpx.post(server + "/v1/translate",
                     json={"text": INPUTS, "prefix": prefixes}).json()["translations"]
    expected = translator.translate(INPUTS, prefixes=prefixes)
    assert [t["text"] for t in got] == expected
    assert all(t["text"].startswith(p) for t, p in zip(got, prefixes, strict=True))


def test_attention_comes_with_its_tokens(server):
    out = httpx.post(server + "/v1/translate",
                     json={"text": ["abc"], "return_attention": True}).json()["translations"][0]
    assert out["source_tokens"] == ["a", "b", "c"]
    assert len(out["attention"]) >= len(out["target_tokens"])
    assert all(len(row) == 3 for row in out["attention"])


def test_many_concurrent_clients_get_their_own_answers(server, model_dir):
    expected = dict(zip(INPUTS, load(str(model_dir)).translate(INPUTS, beam_size=3),
                        strict=True))

    async def client(i, http):
        lines = [INPUTS[(i + k) % len(INPUTS)] for k in range(1 + i % 3)]
        r = await http.post(server + "/v1/translate", json={"text": lines})
        assert r.status_code == 200, r.text
        return lines, [t["text"] for t in r.json()["translations"]]

    async def run_all():
        async with httpx.AsyncClient(timeout=60) as http:
            return await asyncio.gather(*(client(i, http) for i in range(40)))

    for lines, outs in asyncio.run(run_all()):
        assert outs == [expected[line] for line in lines]


@pytest.mark.parametrize("body, status, message", [
    ("{not json", 422, "invalid request"),
    ({"text": "abc"}, 422, "text"),
    ({"text": []}, 422, "text"),
    ({"text": ["abc"], "beam_size": 0}, 422, "beam_size"),
    ({"text": ["abc"], "colour": "red"}, 422, "colour"),
    ({"text": ["abc"], "model": "nope"}, 404, "unknown model 'nope'"),
    ({"text": ["abc"] * 51}, 413, "at most 50"),
    ({"text": ["a" * 2001]}, 413, "2001 characters"),
    ({"text": ["abc"], "beam_size": 2, "n_best": 3}, 422, "n_best (3) cannot exceed"),
    ({"text": ["abc", "cab"], "prefix": ["a"]}, 422, "prefix has 1 entries for 2 lines"),
    ({"text": ["abc"], "top_k": 3}, 422, 'top_k set how to sample; add "sample": true'),
    ({"text": ["abc"], "sample": True, "beam_size": 3}, 422, "drop beam_size (3)"),
    ({"text": ["abc"], "sample": True, "top_p": 0}, 422, "top_p"),
    ({"text": ["abc"], "prefix": ["a" * 1999]}, 413, "2002 characters"),
    ({"text": ["abc"], "task": "title"}, 422, "unknown task 'title'; this model was trained on "
     "one task"),
])
def test_bad_requests_get_clear_json_errors(server, body, status, message):
    if isinstance(body, str):
        r = httpx.post(server + "/v1/translate", content=body,
                       headers={"content-type": "application/json"})
    else:
        r = httpx.post(server + "/v1/translate", json=body)
    assert r.status_code == status
    assert message in r.json()["error"]
    # and the server goes on serving
    assert httpx.post(server + "/v1/translate", json={"text": ["abc"]}).status_code == 200


def test_long_inputs_are_truncated_with_a_warning(model_dir, caplog):
    translator = load(str(model_dir))
    translator.config.decode.max_input_len = 4

    async def requests(http):
        return (await http.post("/v1/translate", json={"text": ["abc", "abcabcab"]})).json()

    with caplog.at_level("INFO", logger="rnnseq.serve"):
        r = serve_in_process({"toy": translator}, requests)
    # one access-log line per request, with its latency and batch
    assert any("POST /v1/translate 200" in m and "lines=2 batch=2" in m and " ms" in m
               for m in caplog.messages)
    assert r["warnings"] == ["line 2 has 8 tokens; translated its first 4 "
                             "(decode.max_input_len)"]
    assert r["translations"][1]["text"] == translator.translate(["abca"])[0]


@pytest.mark.parametrize("options", [{"quantize": "int8"}, {"precision": "bf16"}])
def test_serve_decodes_with_int8_or_bf16_as_translate_does(model_dir, options):
    translator = load(str(model_dir), **options)

    async def requests(http):
        info = (await http.get("/v1/models")).json()["models"][0]
        return info, (await http.post("/v1/translate", json={"text": INPUTS})).json()

    info, out = serve_in_process({"toy": translator}, requests)
    assert info["quantize"] == options.get("quantize")
    assert info["precision"] == options.get("precision", "fp32")
    assert [t["text"] for t in out["translations"]] == translator.translate(INPUTS)


def test_batcher_batches_across_requests_and_splits_long_ones():
    calls = []

    def decode(lines, options):
        calls.append(list(lines))
        return [f"{line}/{options}" for line in lines]

    async def scenario():
        batcher = Batcher(decode, max_wait_ms=30, max_batch_tokens=8, max_queue=20)
        batcher.start()
        try:
            small = [batcher.submit([f"s{i}"], ("o",)) for i in range(5)]
            other = batcher.submit(["x"], ("p",))  # other options: a batch of its own
            results = await asyncio.gather(*small, other)
            assert [r for r, _ in results] == [[f"s{i}/('o',)"] for i in range(5)] + [
                ["x/('p',)"]]
            assert [size for _, size in results] == [5] * 5 + [1]
            assert sorted(map(len, calls)) == [1, 5]  # five requests, one decode call
            calls.clear()
            long, _ = await batcher.submit([f"l{i}" for i in range(20)], ("o",))
            assert long == [f"l{i}/('o',)" for i in range(20)]
            assert max(map(len, calls)) <= 8 and sum(map(len, calls)) == 20
            with pytest.raises(QueueFull):
                await batcher.submit(["q"] * 21, ("o",))
        finally:
            await batcher.stop()

    asyncio.run(scenario())


def test_a_cancelled_request_leaves_the_queue():
    """A client that goes away: its lines not yet in a batch are dropped, the others served."""
    decoded = []

    def decode(lines, options):
        time.sleep(0.2)
        decoded.extend(lines)
        return lines

    async def scenario():
        batcher = Batcher(decode, max_wait_ms=1, max_batch_tokens=2, max_queue=100)
        batcher.start()
        try:
            first = asyncio.ensure_future(batcher.submit(["a"], ()))
            await asyncio.sleep(0.05)  # "a" is being decoded
            gone = asyncio.ensure_future(batcher.submit(["b", "c", "d"], ()))
            await asyncio.sleep(0.01)
            gone.cancel()
            assert (await first)[0] == ["a"]
            assert batcher.queued_lines == 0
            assert (await batcher.submit(["e"], ()))[0] == ["e"]
        finally:
            await batcher.stop()

    asyncio.run(scenario())
    assert decoded == ["a", "e"]


def test_serve_without_models_or_with_two_of_one_name(model_dir, capsys):
    assert main(["serve", f"a={model_dir}", f"a={model_dir}"]) == 2
    assert "two models are named 'a'" in capsys.readouterr().err


def test_metrics_count_requests_latency_batches_and_queue(server):
    httpx.post(server + "/v1/translate", json={"text": ["abc", "cab"]})
    httpx.post(server + "/v1/translate", json={"text": ["abc"], "model": "nope"})
    text = httpx.get(server + "/metrics").text
    assert 'rnnseq_requests_total{path="/v1/translate",status="200"}' in text
    assert 'rnnseq_requests_total{path="/v1/translate",status="404"}' in text
    assert "rnnseq_request_seconds_bucket" in text
    assert 'rnnseq_batch_lines_count{model="toy"}' in text
    assert 'rnnseq_queue_lines{model="toy"} 0.0' in text


def test_sigterm_drains_requests_in_flight(model_dir, tmp_path):
    import signal

    proc, url = start_server(model_dir, tmp_path / "server.log")
    try:
        async def slow_then_term():
            async with httpx.AsyncClient(timeout=120) as http:
                body = {"text": INPUTS * 30, "beam_size": 12, "n_best": 12}
                pending = asyncio.ensure_future(http.post(url + "/v1/translate", json=body))
                await asyncio.sleep(0.3)  # the request is being decoded
                proc.send_signal(signal.SIGTERM)
                return await pending

        response = asyncio.run(slow_then_term())
        assert response.status_code == 200
        assert len(response.json()["translations"]) == len(INPUTS) * 30
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_client_that_goes_away_has_its_work_dropped(model_dir, tmp_path):
    """Over HTTP: a client closes its connection mid-request; the lines not yet decoded leave
    the queue (counted in /metrics), and the server goes on answering others."""
    log = tmp_path / "server.log"
    # one line per batch, so that most of the request is still waiting when the client leaves
    proc, url = start_server(model_dir, log, "--max-batch-tokens", "1", "--max-wait-ms", "1")
    try:
        def metric(name):
            for line in httpx.get(url + "/metrics").text.splitlines():
                if line.startswith(name):
                    return float(line.split()[-1])
            return 0.0

        async def leave_early():
            async with httpx.AsyncClient(timeout=120) as http:
                body = {"text": INPUTS * 30, "beam_size": 12, "n_best": 12}
                pending = asyncio.ensure_future(http.post(url + "/v1/translate", json=body))
                for _ in range(600):  # until its first batches have been decoded
                    await asyncio.sleep(0.05)
                    if metric('rnnseq_batch_lines_count{model="toy"}') >= 3:
                        break
                pending.cancel()  # closes the connection
                with pytest.raises(asyncio.CancelledError):
                    await pending

        asyncio.run(leave_early())

        for _ in range(200):
            if metric('rnnseq_requests_total{path="/v1/translate",status="499"}'):
                break
            time.sleep(0.05)
        dropped = metric('rnnseq_dropped_lines_total{model="toy"}')
        assert 0 < dropped < len(INPUTS) * 30
        assert metric('rnnseq_queue_lines{model="toy"}') == 0
        assert metric('rnnseq_requests_total{path="/v1/translate",status="499"}') == 1
        r = httpx.post(url + "/v1/translate", json={"text": ["abc"]}, timeout=30)
        assert r.status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "Traceback" not in log.read_text()


# -- the API fuzzed from its own OpenAPI schema (bounded): no request makes it fail (5xx) --------
def test_no_request_makes_the_server_fail(server):
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(server + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/translate", "/v1/models", "/health"}
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=60 if operation.method.upper() == "POST" else 3, deadline=None,
                  suppress_health_check=list(HealthCheck))
        def call(case):
            response = case.call(timeout=60)
            assert response.status_code < 500, (case.body, response.text)

        call()


# -- the page, end to end in a real headless Chromium ------------------------------------------
def test_the_page_needs_nothing_from_outside(server):
    html = httpx.get(server + "/").text
    assert 'id="heatmap"' in html
    for asset in ("static/page.js", "static/page.css", "static/favicon.svg"):
        r = httpx.get(f"{server}/{asset}")
        assert r.status_code == 200 and len(r.text) > 200
        html += r.text
    html = html.replace('xmlns="http://www.w3.org/2000/svg"', "")  # a name, not a fetch
    assert "http://" not in html and "https://" not in html and "//cdn" not in html


def chromium(profile):
    """Headless Chromium driven by Selenium, or a skip saying what is missing (a failure when
    RNNSEQ_REQUIRE_BROWSER is set, as in CI, which installs it)."""
    import shutil

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (binary and driver):
        message = ("Chromium and chromedriver not found on PATH "
                   "(Debian: apt-get install chromium chromium-driver)")
        if os.environ.get("RNNSEQ_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", f"--user-data-dir={profile}", "--window-size=1280,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options,
                            service=webdriver.ChromeService(executable_path=driver))


def test_the_page_translates_and_draws_attention(server, model_dir, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    expected = load(str(model_dir)).translate_nbest(["abc"], beam_size=3, n_best=3,
                                                    return_attention=True)[0]
    browser = chromium(tmp_path / "profile")
    try:
        browser.get(server + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda b: b.find_element(By.ID, "model").get_attribute("value") == "toy")
        assert "GRU" in browser.find_element(By.ID, "model-info").text
        assert browser.find_element(By.ID, "beam").get_attribute("value") == "3"
        browser.find_element(By.ID, "source").send_keys("abc")
        browser.find_element(By.ID, "translate").click()
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#outputs .hyp"))

        def texts(selector):
            return [e.get_attribute("textContent")
                    for e in browser.find_elements(By.CSS_SELECTOR, selector)]

        assert texts("#outputs .hyp") == [expected[0].text]
        assert texts("#nbest-list .text") == [h.text for h in expected]
        for shown, hyp in zip(texts("#nbest-list .score"), expected, strict=True):
            assert float(shown) == pytest.approx(hyp.score, abs=1e-3)
        # the heat map: one cell per source x target token, labelled by the tokens
        best = expected[0]
        cells = browser.find_elements(By.CSS_SELECTOR, "#heatmap .heat-cell")
        assert len(cells) == len(best.attention) * 3
        assert texts("#heatmap .col-label") == ["a", "b", "c"]
        rows = texts("#heatmap .row-label")
        assert rows[:len(best.tokens)] == best.tokens and len(rows) == len(best.attention)
        # hovering a cell shows its tokens and weight
        ActionChains(browser).move_to_element(cells[1]).perform()
        tip = browser.find_element(By.ID, "tooltip")
        wait.until(lambda b: tip.is_displayed())
        assert f"{best.attention[0][1]:.3f}" in tip.text and rows[0] in tip.text
        # choosing another hypothesis draws its attention
        browser.find_elements(By.CSS_SELECTOR, "#nbest-list li")[2].click()
        cells = browser.find_elements(By.CSS_SELECTOR, "#heatmap .heat-cell")
        assert len(cells) == len(expected[2].attention) * 3
        assert float(cells[0].get_attribute("data-weight")) == pytest.approx(
            expected[2].attention[0][0], abs=1e-3)
        shot = tmp_path / "page.png"  # to look at when this test fails
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        browser.quit()
