//! Shared helpers of the integration tests: where the test models are, and the golden ids.
#![allow(dead_code)]
use std::path::PathBuf;

/// `$KESTREL_MODELS_DIR`, else `../shared/models` beside the repository (as the C++ tests do).
pub fn models_dir() -> PathBuf {
    match std::env::var_os("KESTREL_MODELS_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../../shared/models"),
    }
}

pub fn stories260k() -> PathBuf {
    models_dir().join("stories260K.gguf")
}

/// The first golden case of stories260K.golden.json (greedy, 48 tokens, from llama.cpp).
pub struct GoldenCase {
    pub prompt: String,
    pub prompt_ids: Vec<i32>,
    pub generated_ids: Vec<i32>,
    pub generated_text: String,
}

/// Reads the first case with a tiny hand parser (no JSON crate is available offline): the file is
/// `{"...": ..., "cases": [{"prompt": "...", "prompt_ids": [...], "generated_ids": [...],
/// "generated_text": "...", ...}, ...]}`.
pub fn golden_first_case() -> GoldenCase {
    let path = models_dir().join("stories260K.golden.json");
    let json =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let cases = &json[json
        .find("\"cases\"")
        .expect("golden file has no \"cases\"")..];
    GoldenCase {
        prompt: string_field(cases, "prompt"),
        prompt_ids: int_array(cases, "prompt_ids"),
        generated_ids: int_array(cases, "generated_ids"),
        generated_text: string_field(cases, "generated_text"),
    }
}

fn value_start<'a>(json: &'a str, key: &str) -> &'a str {
    let quoted = format!("\"{key}\"");
    let at = json
        .find(&quoted)
        .unwrap_or_else(|| panic!("golden file has no {quoted}"));
    let rest = &json[at + quoted.len()..];
    rest[rest.find(':').expect("':' after key") + 1..].trim_start()
}

fn int_array(json: &str, key: &str) -> Vec<i32> {
    let value = value_start(json, key);
    assert!(value.starts_with('['), "{key} is not an array");
    value[1..value.find(']').expect("']'")]
        .split(',')
        .map(|n| {
            n.trim()
                .parse::<i32>()
                .unwrap_or_else(|e| panic!("{key}: {n:?}: {e}"))
        })
        .collect()
}

/// A JSON string without escapes other than \" \\ \n \t and \uXXXX (enough for the golden text).
fn string_field(json: &str, key: &str) -> String {
    let value = value_start(json, key);
    assert!(value.starts_with('"'), "{key} is not a string");
    let mut out = String::new();
    let mut chars = value[1..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return out,
            '\\' => match chars.next().expect("escape") {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(
                        char::from_u32(u32::from_str_radix(&hex, 16).unwrap())
                            .unwrap_or('\u{fffd}'),
                    );
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    panic!("unterminated string for {key}");
}

/// A session with greedy sampling (temperature 0), as the golden ids were made.
pub fn greedy_session(model: &kestrel::Model) -> kestrel::Session {
    model
        .new_session_with(
            &kestrel::SessionOptions::default().sampler(kestrel::SamplerOptions::greedy()),
        )
        .expect("session")
}

/// Generates `n` tokens and returns the streamed token ids (without the flush marker), the text
/// and the stats.
pub fn generate(
    session: &mut kestrel::Session,
    prompt: &str,
    n: u32,
) -> (Vec<i32>, String, kestrel::GenerateStats) {
    let mut ids = Vec::new();
    let mut text = String::new();
    let stats = session
        .generate(
            prompt,
            &kestrel::GenerateOptions::default().max_new_tokens(n),
            |token, piece| {
                if token != kestrel::TOKEN_NONE {
                    ids.push(token);
                }
                text.push_str(piece);
                true
            },
        )
        .expect("generate");
    (ids, text, stats)
}
