"""Constrained output from Python: grammar= and json_schema= on Session.generate/complete and
Engine.submit; every output parses and satisfies its schema; bad ones raise with the position."""
import json

import pytest

SCHEMA = {"type": "object",
          "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 10},
                         "age": {"type": "integer"},
                         "mood": {"enum": ["happy", "sad"]}},
          "required": ["name", "age", "mood"]}


def check(text):
    v = json.loads(text)
    assert set(v) == {"name", "age", "mood"}
    assert isinstance(v["name"], str) and 1 <= len(v["name"]) <= 10
    assert isinstance(v["age"], int) and v["mood"] in ("happy", "sad")


def test_session_json_schema_greedy_and_seeds(model):
    c = model.new_session(temperature=0).complete("Once upon a time", max_new_tokens=120, json_schema=SCHEMA)
    assert c.stats.stop_reason.name == "EOS"
    check(c.text)
    for seed in (1, 2, 3):
        s = model.new_session(temperature=1.0, seed=seed)
        text = "".join(s.generate("Lily", max_new_tokens=120, json_schema=json.dumps(SCHEMA)))
        check(text)
    # Without the constraint the story model writes no JSON.
    free = model.new_session(temperature=0).complete("Once upon a time", max_new_tokens=40).text
    with pytest.raises(ValueError):
        json.loads(free)


def test_session_grammar(model):
    g = 'root ::= ("yes" | "no") "!"\n'
    for seed in (0, 5, 6):
        t = model.new_session(temperature=1.0, seed=seed).complete("Is it?", max_new_tokens=10, grammar=g).text
        assert t in ("yes!", "no!")


def test_engine_json_schema(model):
    engine = model.new_engine()
    c = engine.complete("The dog", max_new_tokens=120, temperature=0.9, seed=4, json_schema=SCHEMA)
    assert c.result.stop_reason.name == "EOS"
    check(c.text)


def test_bad_constraints_raise(kestrel, model):
    s = model.new_session()
    with pytest.raises(kestrel.InvalidArgumentError) as e:
        s.complete("x", grammar='root ::= "a" [')
    assert "grammar line 1, column 14" in e.value.message
    with pytest.raises(kestrel.InvalidArgumentError) as e:
        s.complete("x", json_schema={"type": "string", "pattern": "a+"})
    assert "unsupported keyword 'pattern'" in e.value.message
    with pytest.raises(ValueError):
        s.complete("x", grammar='root ::= "a"', json_schema={})
