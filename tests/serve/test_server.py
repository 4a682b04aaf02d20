"""The HTTP server: OpenAI-compatible completions (whole and streamed), genloom's endpoints, errors as OpenAI error
objects that name the field, capacity (429), disconnects, the API key, metrics, and the official openai client."""

import json
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from genloom.cli import main
from genloom.serve import ServeSettings, create_app


@pytest.fixture
def client(models):
    with TestClient(create_app(models)) as client:
        yield client


def events(text: str) -> list:
    """The payloads of an SSE body: JSON objects, then the literal [DONE]."""
    data = [block[len("data: "):] for block in text.split("\n\n") if block.startswith("data: ")]
    return [d if d == "[DONE]" else json.loads(d) for d in data]


def test_models_lists_every_checkpoint_with_its_family_and_what_it_does(client):
    listed = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert {name: m["family"] for name, m in listed.items()} == {"rnn": "rnnlm", "gpt": "gpt", "bert": "bert",
                                                                 "copier": "seq2seq"}
    assert listed["gpt"]["context_length"] == 48 and listed["gpt"]["object"] == "model"
    assert listed["bert"]["capabilities"] == ["fill-mask", "embeddings"]
    assert "translate" in listed["copier"]["capabilities"]


def test_a_greedy_completion_is_what_the_python_api_gives(client, models):
    body = {"model": "rnn", "prompt": ["the", "a"], "max_tokens": 8, "temperature": 0}
    answer = client.post("/v1/completions", json=body).json()
    expected = models["rnn"].complete(["the", "a"], max_new_tokens=8)
    assert [c["text"] for c in answer["choices"]] == [row[0] for row in expected]
    assert [c["index"] for c in answer["choices"]] == [0, 1] and answer["object"] == "text_completion"
    assert all(c["finish_reason"] in ("stop", "length") for c in answer["choices"])
    usage = answer["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


def test_a_streamed_completion_is_openai_server_sent_events_with_the_same_text(client):
    body = {"model": "gpt", "prompt": "the", "max_tokens": 12, "seed": 5, "n": 2}
    whole = client.post("/v1/completions", json=body).json()
    with client.stream("POST", "/v1/completions", json={**body, "stream": True}) as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        received = events(answer.read().decode())
    assert received[-1] == "[DONE]"
    chunks = received[:-1]
    assert all(c["object"] == "text_completion" and len(c["choices"]) == 1 for c in chunks)
    for index in (0, 1):
        mine = [c["choices"][0] for c in chunks if c["choices"][0]["index"] == index]
        assert "".join(c["text"] for c in mine) == whole["choices"][index]["text"]
        assert [c["finish_reason"] for c in mine if c["finish_reason"]] == [whole["choices"][index]["finish_reason"]]


def test_a_seed_makes_sampling_reproducible_whatever_else_is_decoding(client):
    body = {"model": "gpt", "prompt": "the", "max_tokens": 10, "seed": 7, "temperature": 1.5}
    first = client.post("/v1/completions", json=body).json()["choices"][0]["text"]
    assert client.post("/v1/completions", json=body).json()["choices"][0]["text"] == first


@pytest.mark.parametrize("change, param", [
    ({"temperature": -1}, "temperature"),
    ({"method": "sample", "temperature": 0}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": 47}, "max_tokens"),  # prompt + max_tokens past the GPT's 48-token context
    ({"prompt": "the " * 60}, "prompt"),
    ({"model": "nope"}, "model"),
    ({"model": "bert"}, "model"),  # a masked LM does not complete
    ({"logprobs": 2}, "logprobs"),  # an OpenAI field genloom does not implement: refused by name
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"prompt": 5}, "prompt"),
    ({"prompt": []}, "prompt"),
    ({"stop": ""}, "stop"),
    ({"n": 100}, "n"),
    ({"seed": -1}, "seed"),
    ({"ban_words": ["zzzunknownzzz"]}, "ban_words"),
])
def test_a_bad_request_is_a_400_error_object_that_names_the_field(client, change, param):
    answer = client.post("/v1/completions", json={"model": "gpt", "prompt": "the", "max_tokens": 4, **change})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["message"]


def test_a_body_that_is_not_json_or_too_large_is_refused(models):
    with TestClient(create_app(models, ServeSettings(max_body_bytes=200))) as client:
        broken = client.post("/v1/completions", content=b"{nope", headers={"content-type": "application/json"})
        assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]["message"]
        big = client.post("/v1/completions", json={"model": "gpt", "prompt": "x" * 300})
        assert big.status_code == 413 and "200 bytes" in big.json()["error"]["message"]


def test_translate_streams_and_returns_the_attention_over_the_source(client, models):
    body = {"model": "copier", "input": "Word1 Word2 Word3.", "max_tokens": 10, "attention": True}
    whole = client.post("/v1/translate", json=body).json()["outputs"][0]
    assert whole["text"] == models["copier"].transduce(["Word1 Word2 Word3."], max_new_tokens=10)[0].text
    assert len(whole["attention"]) == len(whole["target_tokens"])
    assert all(len(row) == len(whole["source_tokens"]) and abs(sum(row) - 1) < 1e-4 for row in whole["attention"])
    with client.stream("POST", "/v1/summarize", json={**body, "stream": True}) as answer:
        chunks = events(answer.read().decode())
    last = [c["outputs"][0] for c in chunks[:-1]][-1]
    assert "".join(c["outputs"][0]["text"] for c in chunks[:-1]) == whole["text"]
    assert [w for row in last["attention"] for w in row] == pytest.approx([w for row in whole["attention"] for w in row])
    assert last["finish_reason"] == whole["finish_reason"]
    beam = client.post("/v1/translate", json={**body, "method": "beam", "num_beams": 3}).json()["outputs"][0]
    assert len(beam["attention"]) == len(beam["target_tokens"]) and beam["text"]
    assert beam["source_tokens"] == whole["source_tokens"]
    usage = client.post("/v1/completions", json={"model": "copier", "prompt": "Word1 Word2.", "method": "beam",
                                                  "n": 2, "max_tokens": 6}).json()
    assert len(usage["choices"]) == 2 and usage["usage"]["prompt_tokens"] > 0
    refused = client.post("/v1/translate", json={**body, "model": "gpt"})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "model"


def test_fill_mask_and_embeddings_from_the_bert(client):
    masks = client.post("/v1/fill-mask", json={"model": "bert", "input": "the [MASK] sat", "top_k": 3}).json()
    assert len(masks["masks"]) == 1 and len(masks["masks"][0]["candidates"]) == 3
    answer = client.post("/v1/embeddings", json={"model": "bert", "input": ["the cat", "a dog"]}).json()
    vectors = [row["embedding"] for row in answer["data"]]
    assert len(vectors) == 2 and len(vectors[0]) == 16
    assert all(abs(sum(x * x for x in v) - 1) < 1e-4 for v in vectors)
    assert client.post("/v1/embeddings", json={"model": "rnn", "input": "x"}).json()["error"]["param"] == "model"
    assert client.post("/v1/fill-mask", json={"model": "bert", "input": "no mask"}).status_code == 400


def test_past_capacity_the_answer_is_429_with_retry_after(live):
    long = {"model": "rnn", "prompt": "the", "max_tokens": 2000, "min_tokens": 2000, "stream": True}
    with live(max_batch=1, max_waiting=0) as server:
        with httpx.stream("POST", f"{server.url}/v1/completions", json=long, timeout=10) as running:
            lines = running.iter_lines()  # kept: a dropped iterator closes the connection, which cancels
            next(lines)  # decoding: the batch's one row is taken
            busy = httpx.post(f"{server.url}/v1/completions", json={"model": "rnn", "prompt": "a", "max_tokens": 2})
            assert busy.status_code == 429 and int(busy.headers["Retry-After"]) >= 1
            assert busy.json()["error"]["type"] == "rate_limit_error"
            other = httpx.post(f"{server.url}/v1/completions", json={"model": "gpt", "prompt": "a", "max_tokens": 2})
            assert other.status_code == 200  # another model's batch has room


def wait_until_idle(url: str, model: str, seconds: float = 10) -> int:
    deadline = time.monotonic() + seconds
    while True:
        active = httpx.get(f"{url}/health").json()["models"][model]["active_requests"]
        if active == 0 or time.monotonic() > deadline:
            return active
        time.sleep(0.02)


def test_a_client_that_disconnects_cancels_its_decode(live):
    with live() as server:
        body = {"model": "rnn", "prompt": "the", "max_tokens": 2000, "min_tokens": 2000, "stream": True}
        for _ in range(3):
            with httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=10) as answer:
                lines = answer.iter_lines()
                assert [next(lines) for _ in range(3)][0].startswith("data: {")
                assert httpx.get(f"{server.url}/health").json()["models"]["rnn"]["active_requests"] == 1
        assert wait_until_idle(server.url, "rnn") == 0
        scheduler = server.app.state.served["rnn"].scheduler
        assert scheduler.batch.rows == 0
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'genloom_active_requests{model="rnn"} 0.0' in metrics


def test_concurrent_requests_share_one_decode_batch_and_get_their_own_answers(live, models):
    import concurrent.futures

    prompts = ["the", "a", "the cat", "a dog", "the red", "a big"]
    expected = [models["rnn"].complete([p], max_new_tokens=20, min_new_tokens=20)[0][0] for p in prompts]
    with live() as server:
        def ask(prompt):
            body = {"model": "rnn", "prompt": prompt, "max_tokens": 20, "min_tokens": 20, "temperature": 0}
            return httpx.post(f"{server.url}/v1/completions", json=body, timeout=30).json()["choices"][0]["text"]
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            got = list(pool.map(ask, prompts))
        assert got == expected
        assert server.app.state.served["rnn"].scheduler.peak_rows > 1


def test_an_api_key_guards_the_api_and_metrics_but_not_health_or_the_page(models):
    with TestClient(create_app(models, ServeSettings(api_key="s3cret"))) as client:
        assert client.get("/v1/models").status_code == 401
        assert client.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/metrics").status_code == 401
        assert client.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/health").status_code == 200 and client.get("/").status_code == 200


def test_metrics_count_requests_and_tokens_in_the_prometheus_format(client):
    client.post("/v1/completions", json={"model": "gpt", "prompt": "the", "max_tokens": 3, "min_tokens": 3})
    text = client.get("/metrics").text
    assert 'genloom_requests_total{endpoint="completions",status="200"} 1.0' in text
    assert 'genloom_generated_tokens_total{model="gpt"} 3.0' in text
    assert "genloom_time_to_first_token_seconds_bucket" in text and 'genloom_queue_depth{model="gpt"}' in text


def test_the_official_openai_client_lists_models_and_streams_completions(live):
    openai = pytest.importorskip("openai")
    with live(api_key="k") as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="k")
        assert {m.id for m in client.models.list()} == {"rnn", "gpt", "bert", "copier"}
        whole = client.completions.create(model="gpt", prompt="the", max_tokens=8, temperature=0)
        pieces = [c.choices[0].text for c in client.completions.create(model="gpt", prompt="the", max_tokens=8,
                                                                       temperature=0, stream=True)]
        assert "".join(pieces) == whole.choices[0].text and len(pieces) > 1
        with pytest.raises(openai.BadRequestError, match="top_p"):
            client.completions.create(model="gpt", prompt="the", top_p=2)


def test_serve_refuses_bad_settings_in_one_sentence(capsys, checkpoints):
    assert main(["serve", str(checkpoints["rnn"]), "--port", "70000"]) == 2
    assert main(["serve", str(checkpoints["rnn"]), "--max-batch", "0"]) == 2
    assert main(["serve", f"a={checkpoints['rnn']}", f"a={checkpoints['gpt']}"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("genloom: error")]
    assert len(errors) == 3 and "--port" in errors[0] and "--max-batch" in errors[1] and "NAME=PATH" in errors[2]


def test_uvicorn_workers_build_the_app_from_the_environment(monkeypatch, checkpoints):
    from genloom.errors import UserError
    from genloom.serve import from_environment

    monkeypatch.delenv("GENLOOM_MODELS", raising=False)
    with pytest.raises(UserError, match="GENLOOM_MODELS"):
        from_environment()
    monkeypatch.setenv("GENLOOM_MODELS", f"lm={checkpoints['rnn']}")
    monkeypatch.setenv("GENLOOM_API_KEY", "k")
    monkeypatch.setenv("GENLOOM_DEVICE", "cpu")
    with TestClient(from_environment()) as client:
        answer = client.get("/v1/models", headers={"Authorization": "Bearer k"}).json()
        assert [m["id"] for m in answer["data"]] == ["lm"]


def test_the_safety_and_redaction_options_work_through_the_api(client):
    flagged = client.post("/v1/completions", json={"model": "rnn", "prompt": "the", "max_tokens": 5,
                                                   "temperature": 0, "safety": "flag"}).json()["choices"][0]
    assert flagged["flagged"] == []  # screened: nothing offensive in the toy grammar
    plain = client.post("/v1/completions", json={"model": "rnn", "prompt": "the", "max_tokens": 5}).json()
    assert "flagged" not in plain["choices"][0]
    body = {"model": "copier", "input": "Word1 mail jane.doe@example.com now", "redact": "placeholder",
            "max_tokens": 8}
    output = client.post("/v1/translate", json=body).json()["outputs"][0]
    assert not any("example" in token or "jane" in token for token in output["source_tokens"])
    assert "jane" not in output["text"]


def test_a_request_whose_options_forbid_every_token_fails_alone(live, models):
    tokenizer = models["rnn"].tokenizer
    specials = {tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, tokenizer.unk_id}
    every_word = [tokenizer.id_to_token(i) for i in range(tokenizer.vocab_size) if i not in specials]
    with live() as server:
        long = {"model": "rnn", "prompt": "the", "max_tokens": 300, "min_tokens": 300, "temperature": 0,
                "stream": True}
        with httpx.stream("POST", f"{server.url}/v1/completions", json=long, timeout=30) as running:
            lines = running.iter_lines()
            next(lines)
            bad = httpx.post(f"{server.url}/v1/completions", timeout=30, json={
                "model": "rnn", "prompt": "the", "max_tokens": 3, "min_tokens": 3, "ban_words": every_word})
            rest = [line for line in lines if line.startswith("data: ")]
        assert bad.status_code == 400 and "forbid every token" in bad.json()["error"]["message"]
        assert rest[-1] == "data: [DONE]" and len(rest) > 100  # the request decoding beside it went on


def test_minilm_serves_sentence_embeddings_and_refuses_fill_mask():
    """`genloom serve minilm`: the installed all-MiniLM-L6-v2 answers /v1/embeddings as its sentence vectors."""
    import genloom
    from genloom.serve.app import load_named

    models = load_named(["minilm"], device="cpu")
    with TestClient(create_app(models, ServeSettings())) as client:
        answer = client.post("/v1/embeddings", json={"model": "minilm", "input": ["a man plays guitar"]}).json()
        vector = answer["data"][0]["embedding"]
        assert len(vector) == 384
        expected = genloom.load("minilm", device="cpu").embed(["a man plays guitar"])[0]
        assert max(abs(a - b) for a, b in zip(vector, expected.tolist())) < 1e-5
        assert client.get("/v1/models").json()["data"][0]["capabilities"] == ["embeddings"]
        refused = client.post("/v1/fill-mask", json={"model": "minilm", "input": "a [MASK] day"})
        assert refused.status_code == 400 and "does not do fill-mask (it does embeddings)" in refused.text
