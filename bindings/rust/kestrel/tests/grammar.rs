//! Constrained output through the safe API: a GBNF grammar and a JSON schema on sessions and
//! engine requests (greedy and sampled), and errors that name the bad position or keyword.
mod common;

use kestrel::{Code, GenerateOptions, RequestOptions, Runtime, SamplerOptions, SessionOptions, StopReason};

const GBNF: &str = "root ::= (\"red\" | \"green\" | \"blue\") \" \" [0-9] \"!\"\n";
const SCHEMA: &str = r#"{"type": "object", "properties": {"ok": {"type": "boolean"},
    "n": {"type": "integer"}}, "required": ["ok", "n"]}"#;

fn is_sentence(text: &str) -> bool {
    let Some(rest) = ["red ", "green ", "blue "].iter().find_map(|c| text.strip_prefix(c)) else {
        return false;
    };
    let b = rest.as_bytes();
    b.len() == 2 && b[0].is_ascii_digit() && b[1] == b'!'
}

// {"ok": <bool>, "n": <int>} with any allowed whitespace.
fn is_schema_instance(text: &str) -> bool {
    let squeezed: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(body) = squeezed.strip_prefix("{\"ok\":").and_then(|s| s.strip_suffix('}')) else {
        return false;
    };
    let Some((ok, n)) = body.split_once(",\"n\":") else { return false };
    (ok == "true" || ok == "false") && n.trim_start_matches('-').chars().all(|c| c.is_ascii_digit()) && !n.is_empty()
}

#[test]
fn session_and_engine_are_constrained() {
    let rt = Runtime::new().expect("runtime");
    let model = rt.load_model(common::stories260k()).expect("load stories260K");
    for seed in [0u64, 1, 2, 3] {
        let sampler = if seed == 0 {
            SamplerOptions::greedy()
        } else {
            let mut s = SamplerOptions::default();
            s.temperature = 1.0;
            s.seed = seed;
            s
        };
        let mut session = model.new_session_with(&SessionOptions::default().sampler(sampler.clone())).unwrap();
        let (text, stats) = session
            .generate_text("Once upon a time", &GenerateOptions::default().max_new_tokens(20).grammar(GBNF))
            .unwrap();
        assert_eq!(stats.stop_reason, StopReason::Eos, "{text}");
        assert!(is_sentence(&text), "seed {seed}: {text:?}");
        let (text, _) = session
            .generate_text("Lily", &GenerateOptions::default().max_new_tokens(120).json_schema(SCHEMA))
            .unwrap();
        assert!(is_schema_instance(&text), "seed {seed}: {text:?}");
    }
    let engine = model.new_engine().unwrap();
    let c = engine
        .complete("The cat", &RequestOptions::default().max_new_tokens(120).json_schema(SCHEMA))
        .unwrap();
    assert_eq!(c.result.stop_reason, StopReason::Eos, "{}", c.text);
    assert!(is_schema_instance(&c.text), "{:?}", c.text);
}

#[test]
fn bad_constraints_are_errors() {
    let rt = Runtime::new().expect("runtime");
    let model = rt.load_model(common::stories260k()).expect("load stories260K");
    let mut session = model.new_session().unwrap();
    let e = session
        .generate_text("x", &GenerateOptions::default().grammar("root ::= \"a\" )"))
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("grammar line 1, column 14"), "{}", e.message());
    let e = session
        .generate_text("x", &GenerateOptions::default().json_schema(r#"{"type": "integer", "minimum": 1}"#))
        .unwrap_err();
    assert!(e.message().contains("unsupported keyword 'minimum'"), "{}", e.message());
}
