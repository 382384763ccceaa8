//! The serving engine through the safe API: greedy output equals a session's, streams (iterator
//! and closure), concurrency on the engine thread, cancellation, panics, errors, stats.
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{generate, greedy_session};
use kestrel::{Code, EngineOptions, Model, RequestOptions, RequestState, Runtime, SamplerOptions, StopReason, TOKEN_NONE};

fn model() -> Model {
    let rt = Runtime::new().expect("runtime");
    rt.load_model(common::stories260k()).expect("load stories260K")
}

fn greedy(n: u32) -> RequestOptions {
    RequestOptions::default().max_new_tokens(n).sampler(SamplerOptions::greedy())
}

#[test]
fn complete_equals_the_golden_session() {
    let golden = common::golden_first_case();
    let model = model();
    let engine = model.new_engine().unwrap();
    let done = engine.complete(golden.prompt.as_str(), &greedy(golden.generated_ids.len() as u32)).unwrap();
    assert_eq!(done.tokens, golden.generated_ids);
    assert_eq!(done.text, golden.generated_text);
    assert_eq!(done.result.state, RequestState::Finished);
    assert_eq!(done.result.stop_reason, StopReason::MaxTokens);
    assert_eq!(done.result.error_code, None);
    let stats = engine.stats().unwrap();
    assert_eq!(stats.n_finished, 1);
    assert_eq!(stats.generated_tokens as usize, golden.generated_ids.len());
}

#[test]
fn stream_without_and_with_the_engine_thread() {
    let model = model();
    let (want_ids, want_text, _) = generate(&mut greedy_session(&model), "The cat", 20);
    for threaded in [false, true] {
        let engine = model.new_engine_with(&EngineOptions::default().max_sequences(4)).unwrap();
        if threaded {
            engine.start().unwrap();
        }
        let mut ids = Vec::new();
        let mut text = String::new();
        for piece in engine.stream("The cat", &greedy(20)).unwrap() {
            let piece = piece.unwrap();
            if piece.token != TOKEN_NONE {
                ids.push(piece.token);
            }
            text.push_str(&piece.text);
        }
        assert_eq!(ids, want_ids, "threaded {threaded}");
        assert_eq!(text, want_text, "threaded {threaded}");
    }
}

#[test]
fn concurrent_closures_on_the_engine_thread() {
    let model = model();
    let prompts = ["Once upon a time", "The cat", "Lily and Ben", "One day"];
    let engine = model.new_engine().unwrap();
    engine.start().unwrap();
    let texts: Vec<Arc<Mutex<String>>> = prompts.iter().map(|_| Arc::new(Mutex::new(String::new()))).collect();
    let ids: Vec<_> = prompts
        .iter()
        .zip(&texts)
        .map(|(p, t)| {
            let t = t.clone();
            engine
                .submit_with(*p, &greedy(16), move |sample, _token, text| {
                    assert_eq!(sample, 0);
                    t.lock().unwrap().push_str(text);
                    true
                })
                .unwrap()
        })
        .collect();
    for ((id, prompt), text) in ids.iter().zip(prompts).zip(&texts) {
        assert!(engine.wait(*id, Some(Duration::from_secs(60))).unwrap());
        let (want_ids, want_text, _) = generate(&mut greedy_session(&model), prompt, 16);
        assert_eq!(engine.tokens(*id, 0).unwrap(), want_ids, "{prompt}");
        assert_eq!(engine.text(*id, 0).unwrap(), want_text, "{prompt}");
        assert_eq!(*text.lock().unwrap(), want_text, "{prompt}");
        engine.release(*id).unwrap();
    }
    assert!(engine.wait_all(Some(Duration::from_secs(1))).unwrap());
    engine.stop();
}

#[test]
fn cancel_a_stream_and_errors() {
    let model = model();
    let engine = model.new_engine().unwrap();
    engine.start().unwrap();
    let mut stream = engine.stream("Once upon a time", &greedy(1_000_000)).unwrap();
    let mut n = 0;
    let mut ended_with = None;
    while let Some(item) = stream.next() {
        match item {
            Ok(_) => {
                n += 1;
                if n == 3 {
                    stream.cancel().unwrap();
                }
            }
            Err(e) => ended_with = Some(e.code()),
        }
    }
    assert!(n >= 3);
    assert_eq!(ended_with, Some(Code::Cancelled));
    assert_eq!(stream.result().unwrap().state, RequestState::Cancelled);
    let id = stream.id();
    drop(stream); // releases
    assert_eq!(engine.result(id, 0).unwrap_err().code(), Code::NotFound);

    let err = engine.submit("", &greedy(4)).unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("empty"), "{err}");
    assert_eq!(engine.step().unwrap_err().code(), Code::FailedPrecondition);
    let bad = model.new_engine_with(&EngineOptions::default().kv_block_size(3)).unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("kv_block_size"), "{bad}");
}

#[test]
fn closure_stops_its_sample_and_a_panic_resumes_in_wait() {
    let model = model();
    let engine = model.new_engine().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let id = engine
        .submit_with("Once upon a time", &greedy(32), move |_, _, _| c.fetch_add(1, Ordering::SeqCst) < 2)
        .unwrap();
    assert!(engine.wait(id, None).unwrap());
    assert_eq!(engine.result(id, 0).unwrap().stop_reason, StopReason::Callback);
    assert_eq!(engine.tokens(id, 0).unwrap().len(), 3);
    engine.release(id).unwrap();

    let id = engine.submit_with("Once upon a time", &greedy(8), |_, _, _| panic!("closure panicked")).unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.wait(id, None)));
    let payload = caught.expect_err("wait did not resume the panic");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"closure panicked"));
    engine.release(id).unwrap();
    // The engine keeps working.
    assert_eq!(engine.complete("Once upon a time", &greedy(4)).unwrap().tokens.len(), 4);
}
