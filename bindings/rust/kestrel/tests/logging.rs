//! The log callback: receives the library's lines, and stays alive as long as any model or
//! session made from its runtime (the library may log after the runtime is dropped).
//! A test binary of its own because it creates a runtime with its own options (see api.rs).
mod common;

use std::sync::{Arc, Mutex};

use common::{generate, greedy_session};
use kestrel::{LogLevel, Runtime, RuntimeOptions};

#[test]
fn log_callback_receives_lines() {
    let lines = Arc::new(Mutex::new(Vec::<(LogLevel, String)>::new()));
    let sink = lines.clone();
    let rt = Runtime::with_options(
        RuntimeOptions::new()
            .log_level(LogLevel::Debug)
            .log_callback(move |level, line| sink.lock().unwrap().push((level, line.to_string()))),
    )
    .unwrap();
    let model = rt.load_model(common::stories260k()).unwrap();
    drop(rt);
    let mut session = greedy_session(&model);
    generate(&mut session, "Once", 2);
    drop(session);
    drop(model);
    let lines = lines.lock().unwrap();
    assert!(!lines.is_empty(), "no log lines at level Debug");
    assert!(
        lines.iter().any(|(_, line)| line.contains("stories260K")),
        "{lines:?}"
    );
}
