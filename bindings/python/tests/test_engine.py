"""The engine from Python: greedy output equals a session's, streams with and without the engine
thread, concurrent requests with callbacks, cancellation, forks, errors, stats."""
import threading

import pytest


def greedy(model, prompt, n):
    return model.new_session(temperature=0).complete(prompt, max_new_tokens=n)


def test_complete_equals_a_greedy_session(model, golden):
    case = golden[0]
    engine = model.new_engine()
    c = engine.complete(case["prompt"], max_new_tokens=48, temperature=0)
    assert c.tokens == case["generated_ids"]
    assert c.text == "".join(case["generated_pieces"])
    assert c.result.done and c.result.stop_reason.name == "MAX_TOKENS"
    assert engine.stats().n_finished == 1


@pytest.mark.parametrize("threaded", [False, True])
def test_stream(model, threaded):
    engine = model.new_engine(max_sequences=4)
    if threaded:
        engine.start()
    want = greedy(model, "The cat", 20)
    stream = engine.stream("The cat", max_new_tokens=20, temperature=0)
    assert "".join(stream) == want.text
    assert [t for _, t, _ in stream.pieces if t >= 0] == want.tokens
    assert stream.result().n_generated_tokens == 20


def test_concurrent_requests_with_callbacks(model):
    prompts = ["Once upon a time", "The cat", "Lily and Ben", "One day"]
    engine = model.new_engine()
    engine.start()
    texts = {p: [] for p in prompts}
    lock = threading.Lock()

    def collect(p):
        def on_token(sample, token, text):
            with lock:
                texts[p].append(text)
            return True
        return on_token

    requests = [engine.submit(p, max_new_tokens=16, temperature=0, on_token=collect(p)) for p in prompts]
    for p, r in zip(prompts, requests):
        assert r.wait(timeout=60)
        want = greedy(model, p, 16)
        assert r.tokens() == want.tokens
        assert r.text() == want.text == "".join(texts[p])
        r.release()
    engine.stop()


def test_cancel_a_stream_and_errors(kestrel, model):
    engine = model.new_engine()
    engine.start()
    stream = engine.stream("Once upon a time", max_new_tokens=100000, temperature=0)
    got = []
    with pytest.raises(kestrel.CancelledError):
        for text in stream:
            got.append(text)
            if len(got) == 3:
                stream.cancel()
    assert stream.result().state == kestrel.RequestState.CANCELLED
    with pytest.raises(kestrel.InvalidArgumentError) as e:
        engine.submit("")
    assert "empty" in e.value.message
    with pytest.raises(kestrel.FailedPreconditionError):
        engine.step()
    with pytest.raises(kestrel.InvalidArgumentError) as e:
        model.new_engine(kv_block_size=3)
    assert "kv_block_size" in e.value.message


def test_forks_timeout_and_callback_errors(kestrel, model):
    engine = model.new_engine()
    r = engine.submit("Once upon a time", max_new_tokens=8, n=3, temperature=0.9, seed=3)
    assert r.wait()
    assert r.result(2).n_samples == 3
    assert all(len(r.tokens(i)) == 8 for i in range(3))
    with pytest.raises(kestrel.OutOfRangeError):
        r.result(3)
    r.release()

    def boom(sample, token, text):
        raise KeyError("callback failed")

    r = engine.submit("Once upon a time", max_new_tokens=8, on_token=boom)
    with pytest.raises(KeyError):
        r.wait()
    assert r.result().stop_reason == kestrel.StopReason.CALLBACK
    r.release()
    engine.start()
    r = engine.submit("Once upon a time", max_new_tokens=100000, temperature=0)
    assert r.wait(timeout=0.001) is False
    r.cancel()
    with pytest.raises(kestrel.CancelledError):
        r.wait()


def test_leaving_a_stream_early_releases_its_request(model):
    engine = model.new_engine()
    engine.start()
    for i, _ in enumerate(engine.stream("Once upon a time", max_new_tokens=100000, temperature=0)):
        if i == 2:
            break
    # Released (so cancelled and done) before the loop's next statement.
    stats = engine.stats()
    assert stats.n_finished == 1 and stats.n_waiting == 0, stats
    assert stats.generated_tokens < 1000, stats
