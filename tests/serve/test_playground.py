"""The playground page, end to end in headless Chromium (Debian's, driven by Playwright): pick a model, type, watch
tokens stream, stop a generation, see a seq2seq model's attention heatmap, and a screenshot of it all."""

import pytest


@pytest.fixture
def page(live, browser):
    server = live()
    with server:
        page = browser.new_page()
        page.goto(server.url + "/")
        page.wait_for_function("document.querySelectorAll('#model option').length === 4")
        yield page, server


def test_a_user_streams_a_completion_and_stops_a_long_one(page, tmp_path):
    page, server = page
    page.select_option("#model", "gpt")
    page.fill("#prompt", "the")
    page.select_option("#method", "greedy")
    page.fill("#max-tokens", "12")
    page.click("#generate")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('Done')")
    assert page.text_content("#output").strip()

    page.select_option("#model", "rnn")
    page.select_option("#method", "sample")
    page.fill("#max-tokens", "2000")
    page.fill("#seed", "1")
    page.fill("#min-tokens", "2000")  # a long generation, no end before 2000 tokens: watch it stream, then stop it
    page.click("#generate")
    page.wait_for_function("document.getElementById('output').textContent.split(' ').length > 5")
    page.click("#stop-button")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('Stopped')")
    shown = page.text_content("#output")
    page.wait_for_timeout(300)
    assert page.text_content("#output") == shown  # nothing arrives after the stop
    scheduler = server.app.state.served["rnn"].scheduler
    page.wait_for_function("fetch('/health').then(r => r.json()).then(h => h.models.rnn.active_requests === 0)")
    assert scheduler.batch.rows == 0
    page.screenshot(path=str(tmp_path / "completion.png"), full_page=True)


def test_a_translation_shows_its_attention_heatmap(page, tmp_path):
    page, server = page
    page.select_option("#model", "copier")
    assert page.input_value("#task") == "translate" and page.text_content("#prompt-label") == "Source text"
    page.fill("#prompt", "Word1 Word2 Word3.")
    page.click("#generate")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('Done')")
    assert page.is_visible("#heatmap")
    painted = page.evaluate("""() => {
        const c = document.getElementById('heatmap');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let blue = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i + 2] === 255 && d[i] < 250) blue++;
        return blue; }""")
    assert painted > 50  # attention cells were drawn
    page.screenshot(path=str(tmp_path / "translation.png"), full_page=True)


def test_a_bad_request_shows_the_servers_sentence(page):
    page, _ = page
    page.select_option("#model", "gpt")
    page.fill("#prompt", "the")
    page.fill("#top-p", "3")
    page.click("#generate")
    page.wait_for_function("document.getElementById('status').classList.contains('error')")
    assert "top_p" in page.text_content("#status")
