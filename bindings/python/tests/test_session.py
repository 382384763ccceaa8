"""Runtime, Model and Session of the Python binding against stories260K (golden ids from
llama.cpp), streaming iterators, cancellation, errors as exceptions, callbacks."""
import threading

import pytest

from conftest import STORIES


def test_version_and_library(kestrel):
    assert kestrel.version().startswith("0.")
    assert kestrel.version_number() // 10000 == 0
    assert kestrel.LIBRARY_PATH


def test_complete_is_golden(model, golden):
    case = golden[0]
    session = model.new_session(temperature=0)
    c = session.complete(case["prompt"], max_new_tokens=len(case["generated_ids"]))
    assert c.tokens == case["generated_ids"]
    assert c.text == "".join(case["generated_pieces"])
    assert c.stats.n_prompt_tokens == len(case["prompt_ids"])
    assert c.stats.stop_reason.name == "MAX_TOKENS"
    assert model.tokenize(case["prompt"]) == case["prompt_ids"]


def test_generate_streams_pieces(kestrel, model, golden):
    case = golden[1]
    session = model.new_session(sampler=kestrel.SamplerOptions.greedy())
    stream = session.generate(case["prompt"], max_new_tokens=24)
    pieces = list(stream)
    assert len(pieces) > 1
    assert "".join(pieces) == "".join(case["generated_pieces"][:24])
    assert stream.tokens == case["generated_ids"][:24]
    assert stream.stats.n_generated_tokens == 24
    # Token ids as the prompt, used as given.
    again = session.complete(case["prompt_ids"], max_new_tokens=8)
    assert again.tokens == case["generated_ids"][:8]


def test_leaving_the_loop_cancels_and_the_session_stays_usable(model, golden):
    session = model.new_session(temperature=0)
    for i, _ in enumerate(session.generate("Once upon a time", max_new_tokens=100)):
        if i == 2:
            break
    # The helper thread is gone and the session is free again.
    assert session.complete("Once upon a time", max_new_tokens=4).tokens == golden[0]["generated_ids"][:4]


def test_cancel_from_another_thread(kestrel, model):
    session = model.new_session(temperature=0, context_length=128)
    stream = session.generate("Once upon a time", max_new_tokens=100000)
    got = []
    with pytest.raises(kestrel.CancelledError):
        for text in stream:
            got.append(text)
            if len(got) == 2:
                threading.Thread(target=stream.cancel).start()
    assert len(got) >= 2


def test_errors_are_exceptions_with_codes(kestrel, runtime, model):
    with pytest.raises(kestrel.NotFoundError) as e:
        runtime.load_model("/nonexistent/model.gguf")
    assert e.value.code == kestrel.Code.NOT_FOUND
    assert "/nonexistent/model.gguf" in e.value.message
    assert str(e.value).startswith("NOT_FOUND: ")
    assert isinstance(e.value, LookupError) and isinstance(e.value, kestrel.Error)
    with pytest.raises(kestrel.NotFoundError) as e:
        runtime.load_model(STORIES, device="no-such-device")
    assert "no-such-device" in e.value.message
    session = model.new_session()
    with pytest.raises(kestrel.InvalidArgumentError):
        session.complete("")
    with pytest.raises(kestrel.InvalidArgumentError) as e:
        model.new_session(context_length=8).complete("Once upon a time " * 10)
    assert "context" in e.value.message
    with pytest.raises(kestrel.OutOfRangeError):
        model.detokenize([10 ** 6])
    with pytest.raises(ValueError):
        model.new_session(kv_type="f8")
    with pytest.raises(TypeError):
        model.new_session(temprature=0)


def test_callbacks_log_and_progress(kestrel):
    lines = []
    rt = kestrel.Runtime(log=lambda level, text: lines.append((level, text)),
                         log_level=kestrel.LogLevel.INFO)
    fractions = []
    m = rt.load_model(STORIES, device="ref", progress=lambda f: fractions.append(f) or True)
    assert fractions and fractions[-1] == pytest.approx(1.0)
    assert any("loaded plugin 'ref'" in text for _, text in lines), lines
    with pytest.raises(kestrel.CancelledError):
        rt.load_model(STORIES, device="ref", progress=lambda f: False)

    class Boom(Exception):
        pass

    def progress(_):
        raise Boom()

    with pytest.raises(Boom):
        rt.load_model(STORIES, device="ref", progress=progress)
    rt.close()
    # The model outlives its runtime.
    assert m.new_session(temperature=0).complete("Once", max_new_tokens=2).tokens


def test_info_tokenizer_plugins(runtime, model):
    info = model.info()
    assert info.architecture == "llama" and info.vocab_size == 512 and info.n_layers == 5
    ids = model.tokenize("Once upon a time", add_bos=False)
    assert model.detokenize(ids, remove_leading_space=True) == "Once upon a time"
    assert model.token_to_piece(ids[0])
    plugins = runtime.plugins()
    assert any(p.name == "ref" and p.loaded for p in plugins)
    assert any(d.name == "ref" for d in runtime.devices())
