"""kestrel serve driven by the real openai client over loopback: completions, chat, streaming,
16 concurrent streams, errors, a client that disconnects in the middle of a stream."""
import concurrent.futures
import http.client
import json
import time

import openai
import pytest


def client(server):
    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=60)


def test_models_health_metrics(stories):
    models = client(stories).models.list()
    assert [m.id for m in models.data] == [stories.model_id]
    status, ctype, body = stories.get("/health")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    status, ctype, body = stories.get("/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    assert "# TYPE kestrel_engine_requests_running gauge" in body
    assert "kestrel_engine_kv_blocks_total" in body


def test_completion_is_the_golden_greedy_text(stories, golden):
    case = golden[0]
    r = client(stories).completions.create(model=stories.model_id, prompt=case["prompt"], max_tokens=16,
                                           temperature=0)
    assert r.choices[0].text == "".join(case["generated_pieces"][:16])
    assert r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens == len(case["prompt_ids"])
    assert r.usage.completion_tokens == 16
    assert r.object == "text_completion" and r.id.startswith("cmpl-")


def test_completion_stream_equals_the_whole_answer(stories, golden):
    case = golden[1]
    c = client(stories)
    whole = c.completions.create(model=stories.model_id, prompt=case["prompt"], max_tokens=24, temperature=0)
    pieces, finish, usage = [], None, None
    for chunk in c.completions.create(model=stories.model_id, prompt=case["prompt"], max_tokens=24,
                                      temperature=0, stream=True, stream_options={"include_usage": True}):
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.text)
            finish = choice.finish_reason or finish
    assert "".join(pieces) == whole.choices[0].text == "".join(case["generated_pieces"][:24])
    assert len([p for p in pieces if p]) > 1, "the answer came in one piece, not streamed"
    assert finish == "length"
    assert usage.completion_tokens == 24


def test_chat_and_chat_stream(stories):
    c = client(stories)
    messages = [{"role": "system", "content": "You tell stories."},
                {"role": "user", "content": "Once upon a time"}]
    r = c.chat.completions.create(model=stories.model_id, messages=messages, max_tokens=20, temperature=0)
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content
    assert r.choices[0].finish_reason in ("length", "stop")
    roles, content, finish = [], [], None
    for chunk in c.chat.completions.create(model=stories.model_id, messages=messages, max_tokens=20,
                                           temperature=0, stream=True):
        assert chunk.object == "chat.completion.chunk"
        delta = chunk.choices[0].delta
        if delta.role:
            roles.append(delta.role)
        if delta.content:
            content.append(delta.content)
        finish = chunk.choices[0].finish_reason or finish
    assert roles == ["assistant"]
    assert "".join(content) == r.choices[0].message.content
    assert finish == r.choices[0].finish_reason


def test_n_samples_fork_the_prompt(stories):
    r = client(stories).completions.create(model=stories.model_id, prompt="Once upon a time", max_tokens=8,
                                           temperature=0.9, n=3, seed=5)
    assert sorted(c.index for c in r.choices) == [0, 1, 2]
    assert r.usage.completion_tokens == 24


def test_bad_requests_get_openai_errors(stories):
    c = client(stories)
    with pytest.raises(openai.BadRequestError) as e:
        c.completions.create(model=stories.model_id, prompt="x", temperature=5)
    assert e.value.status_code == 400
    assert e.value.body["param"] == "temperature" and "[0, 2]" in e.value.body["message"]
    with pytest.raises(openai.NotFoundError) as e:
        c.completions.create(model="gpt-4", prompt="x")
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:  # longer than the 128-token context
        c.completions.create(model=stories.model_id, prompt="Once upon a time " * 60, max_tokens=4)
    assert e.value.body["code"] == "context_length_exceeded"
    conn = http.client.HTTPConnection(stories.base.split("//")[1], timeout=30)
    conn.request("POST", "/v1/completions", body="{not json", headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    body = json.loads(r.read())
    assert r.status == 400 and body["error"]["type"] == "invalid_request_error"
    conn.request("GET", "/v1/nothing")
    r = conn.getresponse()
    assert r.status == 404 and json.loads(r.read())["error"]["code"] == "not_found"
    assert stories.metrics()['kestrel_http_responses_total{endpoint="/v1/completions",code="400"}'] >= 2


def test_sixteen_concurrent_streaming_clients(stories, golden):
    prompts = [golden[i % len(golden)]["prompt"] for i in range(16)]

    def stream(prompt):
        c = client(stories)
        text = []
        for chunk in c.completions.create(model=stories.model_id, prompt=prompt, max_tokens=32,
                                          temperature=0, stream=True):
            text.extend(choice.text for choice in chunk.choices)
        return "".join(text)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        texts = list(pool.map(stream, prompts))
    # Batched with 15 others, each stream is what the prompt gives alone (greedy).
    for prompt, text in zip(prompts, texts):
        alone = client(stories).completions.create(model=stories.model_id, prompt=prompt, max_tokens=32,
                                                   temperature=0)
        assert text == alone.choices[0].text, prompt


def test_disconnect_in_the_middle_of_a_stream_cancels_the_request(long_context):
    before = long_context.metrics()
    c = client(long_context)
    stream = c.completions.create(model=long_context.model_id, prompt="Hello", max_tokens=4000,
                                  temperature=0, stream=True)
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()  # closes the connection mid-stream
    deadline = time.time() + 20
    while time.time() < deadline:
        m = long_context.metrics()
        if (m["kestrel_client_disconnects_total"] > before["kestrel_client_disconnects_total"]
                and m["kestrel_engine_requests_running"] == 0 and m["kestrel_engine_requests_waiting"] == 0):
            break
        time.sleep(0.05)
    assert m["kestrel_client_disconnects_total"] == before["kestrel_client_disconnects_total"] + 1, m
    assert m["kestrel_engine_requests_running"] == 0, m
    # Cancelled long before its 4000 tokens.
    generated = m["kestrel_engine_generated_tokens_total"] - before["kestrel_engine_generated_tokens_total"]
    assert generated < 4000, generated
    # The server still answers.
    r = c.completions.create(model=long_context.model_id, prompt="Hello", max_tokens=4, temperature=0)
    assert r.usage.completion_tokens == 4


def test_a_busy_port_is_an_error_not_a_hang(stories):
    import subprocess
    from conftest import KESTREL, MODELS_DIR
    import os
    port = stories.base.rsplit(":", 1)[1]
    r = subprocess.run([KESTREL, "serve", "-m", os.path.join(MODELS_DIR, "stories260K.gguf"), "--port", port],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr
    r = subprocess.run([KESTREL, "serve", "-m", os.path.join(MODELS_DIR, "stories260K.gguf"), "--port", "70000"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert r.returncode == 2 and "'70000' for --port" in r.stderr


def test_a_non_streamed_client_that_leaves_cancels_its_request(long_context):
    before = long_context.metrics()
    # A client that gives up after the response headers (a raw connection: the openai client's
    # timeout is per read, which the server's heartbeat spaces keep from expiring).
    conn = http.client.HTTPConnection(long_context.base.split("//")[1], timeout=60)
    body = json.dumps({"model": long_context.model_id, "prompt": "Hello", "max_tokens": 4000, "temperature": 0})
    conn.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("Transfer-Encoding") == "chunked"
    r.close()  # (the response holds the socket open too)
    conn.close()
    deadline = time.time() + 20
    while time.time() < deadline:
        m = long_context.metrics()
        if m["kestrel_client_disconnects_total"] > before["kestrel_client_disconnects_total"]:
            break
        time.sleep(0.1)
    assert m["kestrel_client_disconnects_total"] == before["kestrel_client_disconnects_total"] + 1, m
    time.sleep(0.5)
    m = long_context.metrics()
    generated = m["kestrel_engine_generated_tokens_total"] - before["kestrel_engine_generated_tokens_total"]
    assert generated < 4000, generated


def test_a_long_non_streamed_answer_is_valid_json(long_context):
    # Longer than the 1 s after which the answer is sent chunked, with a space each second.
    body = json.dumps({"model": long_context.model_id, "prompt": "Hello", "max_tokens": 600, "temperature": 0})
    conn = http.client.HTTPConnection(long_context.base.split("//")[1], timeout=120)
    start = time.time()
    conn.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    raw = r.read().decode()
    assert r.status == 200
    if time.time() - start > 2.5:  # (on a very fast machine it may finish within the first second)
        assert r.getheader("Transfer-Encoding") == "chunked" and raw.startswith(" "), raw[:20]
    d = json.loads(raw)
    assert d["usage"]["completion_tokens"] == 600 and d["choices"][0]["finish_reason"] == "length"
    # The openai client reads it too.
    r = client(long_context).completions.create(model=long_context.model_id, prompt="Hello", max_tokens=300,
                                                temperature=0)
    assert r.usage.completion_tokens == 300


def test_completion_logprobs(stories):
    r = client(stories).completions.create(model=stories.model_id, prompt="Once upon a time", max_tokens=8,
                                           temperature=0, logprobs=3)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == r.usage.completion_tokens == 8
    assert "".join(lp.tokens) == r.choices[0].text
    assert lp.text_offset[0] == 0
    for tok, value, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert value <= 0 and 1 <= len(top) <= 3
        assert max(top.values()) == pytest.approx(value)  # greedy: the most likely token
        assert tok in top
    plain = client(stories).completions.create(model=stories.model_id, prompt="Once upon a time", max_tokens=8,
                                               temperature=0)
    assert plain.choices[0].logprobs is None and plain.choices[0].text == r.choices[0].text


def test_chat_logprobs_streamed_and_whole(stories):
    c = client(stories)
    messages = [{"role": "user", "content": "Once upon a time"}]
    r = c.chat.completions.create(model=stories.model_id, messages=messages, max_tokens=10, temperature=0,
                                  logprobs=True, top_logprobs=2)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    assert "".join(e.token for e in content) == r.choices[0].message.content
    for e in content:
        assert len(e.top_logprobs) == 2 and e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob
        assert e.top_logprobs[0].token == e.token and bytes(e.bytes) == e.token.encode()
    streamed = []
    for chunk in c.chat.completions.create(model=stories.model_id, messages=messages, max_tokens=10,
                                           temperature=0, logprobs=True, top_logprobs=2, stream=True):
        if chunk.choices and chunk.choices[0].logprobs is not None:
            streamed += chunk.choices[0].logprobs.content or []
    assert [(e.token, e.logprob) for e in streamed] == [(e.token, e.logprob) for e in content]


def test_logit_bias_and_ignore_eos(stories, golden):
    c = client(stories)
    # Token 2 is EOS: pushed up, the answer ends at once; with ignore_eos it cannot end.
    r = c.completions.create(model=stories.model_id, prompt="Once upon a time", max_tokens=12, temperature=0,
                             logit_bias={"2": 100})
    assert r.choices[0].finish_reason == "stop" and r.usage.completion_tokens == 0
    r = c.completions.create(model=stories.model_id, prompt="Once upon a time", max_tokens=12, temperature=0,
                             logit_bias={"2": 100}, extra_body={"ignore_eos": True})
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 12
    # -100 bans: the greedy first token (golden) is replaced, and has no place in the top list.
    case = golden[0]
    banned = c.completions.create(model=stories.model_id, prompt=case["prompt"], max_tokens=4, temperature=0,
                                  logprobs=5, logit_bias={str(case["generated_ids"][0]): -100})
    lp = banned.choices[0].logprobs
    assert lp.tokens[0] != case["generated_pieces"][0]
    assert case["generated_pieces"][0] not in lp.top_logprobs[0]
    with pytest.raises(openai.BadRequestError) as e:
        c.completions.create(model=stories.model_id, prompt="x", max_tokens=2, logit_bias={"99999999": 1})
    assert e.value.body["param"] == "logit_bias" and "vocabulary" in e.value.body["message"]


def test_chat_uses_the_models_template(smollm2):
    import subprocess
    from conftest import KESTREL
    c = client(smollm2)
    messages = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "What is the capital of France?"}]
    r = c.chat.completions.create(model=smollm2.model_id, messages=messages, max_tokens=24, temperature=0)
    cli = subprocess.run([KESTREL, "generate", "-m", smollm2.path, "--device", "cpu", "--chat", "--system",
                          messages[0]["content"], "-p", messages[1]["content"], "-n", "24", "--temp", "0",
                          "--no-echo", "--ctx", "512", "--json"],
                         check=True, stdout=subprocess.PIPE, text=True)
    d = json.loads(cli.stdout.splitlines()[-1])
    assert r.usage.prompt_tokens == d["n_prompt"]  # the same templated prompt
    assert r.choices[0].message.content == d["text"]
    assert "<|im_start|>" not in r.choices[0].message.content
    if d["stop_reason"] == "eos":
        assert r.choices[0].finish_reason == "stop"


def test_embeddings(stories):
    import math
    import subprocess
    from conftest import KESTREL, MODELS_DIR
    c = client(stories)
    r = c.embeddings.create(model=stories.model_id, input=["Once upon a time", "The dog ran"])  # base64
    assert [d.index for d in r.data] == [0, 1]
    v = r.data[0].embedding
    assert abs(sum(x * x for x in v) - 1) < 1e-4
    assert r.usage.prompt_tokens > 5  # "Once upon a time" alone is 5 with BOS
    f = c.embeddings.create(model=stories.model_id, input="Once upon a time", encoding_format="float")
    assert f.data[0].embedding == pytest.approx(v, abs=1e-6)
    cli = subprocess.run([KESTREL, "embed", "-m", MODELS_DIR + "/stories260K.gguf", "--device", "cpu",
                          "-p", "Once upon a time", "--json"], check=True, stdout=subprocess.PIPE, text=True)
    want = json.loads(cli.stdout)["embedding"]
    assert sum(a * b for a, b in zip(want, v)) > 0.9999
    with pytest.raises(openai.BadRequestError) as e:
        c.embeddings.create(model=stories.model_id, input=[], encoding_format="float")
    assert e.value.body["param"] == "input"


PERSON = {"type": "object",
          "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 10},
                         "age": {"type": "integer"},
                         "pets": {"type": "array", "items": {"enum": ["cat", "dog", "fish"]}, "maxItems": 2}},
          "required": ["name", "age", "pets"]}


def check_person(text):
    v = json.loads(text)
    assert set(v) == {"name", "age", "pets"}, text
    assert isinstance(v["name"], str) and 1 <= len(v["name"]) <= 10
    assert isinstance(v["age"], int)
    assert len(v["pets"]) <= 2 and all(p in ("cat", "dog", "fish") for p in v["pets"])


def test_response_format_json_schema_and_json_object(stories):
    c = client(stories)
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    r = c.completions.create(model=stories.model_id, prompt="Once upon a time", max_tokens=100, temperature=0,
                             extra_body={"response_format": fmt})
    assert r.choices[0].finish_reason == "stop"
    check_person(r.choices[0].text)
    for seed in (1, 2, 3):
        r = c.chat.completions.create(model=stories.model_id, messages=[{"role": "user", "content": "Tim"}],
                                      max_tokens=100, temperature=1.0, seed=seed, response_format=fmt)
        assert r.choices[0].finish_reason == "stop"
        check_person(r.choices[0].message.content)
    # Streamed: the pieces join to valid JSON too.
    stream = c.chat.completions.create(model=stories.model_id, messages=[{"role": "user", "content": "Sam"}],
                                       max_tokens=100, temperature=0.7, seed=9, response_format=fmt, stream=True)
    check_person("".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices))
    # The extension "grammar" (GBNF).
    r = c.completions.create(model=stories.model_id, prompt="x", max_tokens=10, temperature=1.0, seed=3,
                             extra_body={"grammar": 'root ::= ("yes" | "no") "."'})
    assert r.choices[0].text in ("yes.", "no.")


def test_response_format_errors_are_400(stories):
    c = client(stories)
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model=stories.model_id, messages=[{"role": "user", "content": "x"}], max_tokens=4,
                                  response_format={"type": "json_schema", "json_schema": {
                                      "name": "s", "schema": {"type": "string", "pattern": "^a"}}})
    assert e.value.status_code == 400
    assert e.value.body["param"] == "response_format"
    assert "unsupported keyword 'pattern'" in e.value.body["message"]
    assert e.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as e:
        c.completions.create(model=stories.model_id, prompt="x", max_tokens=4, extra_body={"grammar": "root ::= [b-a]"})
    assert e.value.body["param"] == "grammar" and "line 1, column 11" in e.value.body["message"]


def test_smollm2_chat_json_schema(smollm2):
    schema = {"type": "object",
              "properties": {"city": {"type": "string", "maxLength": 30},
                             "country": {"type": "string", "maxLength": 30},
                             "is_capital": {"type": "boolean"}},
              "required": ["city", "country", "is_capital"]}
    c = client(smollm2)
    messages = [{"role": "user", "content": "Give Paris as JSON with city, country and is_capital."}]
    for temperature, seed in ((0, 1), (0.8, 2), (0.8, 3)):
        r = c.chat.completions.create(model=smollm2.model_id, messages=messages, max_tokens=120,
                                      temperature=temperature, seed=seed,
                                      response_format={"type": "json_schema",
                                                       "json_schema": {"name": "city", "schema": schema}})
        assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
        v = json.loads(r.choices[0].message.content)
        assert set(v) == {"city", "country", "is_capital"} and isinstance(v["is_capital"], bool)
    r = c.chat.completions.create(model=smollm2.model_id, messages=messages, max_tokens=200, temperature=0,
                                  response_format={"type": "json_object"})
    assert isinstance(json.loads(r.choices[0].message.content), dict)
