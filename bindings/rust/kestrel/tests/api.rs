//! Integration tests of the safe API against the built library and the stories260K test model.
//! All tests of this binary share one `Runtime` (it is `Sync`); tests that need a runtime of their
//! own live in separate test binaries (separate processes): see two_runtimes.rs for why.
mod common;

use std::sync::{mpsc, OnceLock};
use std::thread;

use common::{generate, greedy_session};
use kestrel::{
    Code, DeviceKind, GenerateOptions, KvType, Model, ModelOptions, Runtime, SamplerOptions,
    SessionOptions, StopReason, TOKEN_NONE,
};

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new().expect("runtime"))
}

fn model(rt: &Runtime) -> Model {
    rt.load_model(common::stories260k())
        .expect("load stories260K")
}

#[test]
fn golden_first_case_token_exact() {
    let golden = common::golden_first_case();
    assert_eq!(golden.prompt, "Once upon a time");
    let rt = runtime();
    let model = model(rt);
    assert_eq!(
        model.tokenize(&golden.prompt, true).unwrap(),
        golden.prompt_ids
    );

    let mut session = greedy_session(&model);
    let (ids, text, stats) = generate(
        &mut session,
        &golden.prompt,
        golden.generated_ids.len() as u32,
    );
    assert_eq!(ids, golden.generated_ids);
    assert_eq!(text, golden.generated_text);
    assert_eq!(stats.n_prompt_tokens as usize, golden.prompt_ids.len());
    assert_eq!(
        stats.n_generated_tokens as usize,
        golden.generated_ids.len()
    );
    assert_eq!(stats.stop_reason, StopReason::MaxTokens);

    // The same run with the prompt given as token ids (used as given, BOS included).
    let mut again = Vec::new();
    session
        .generate(
            &golden.prompt_ids,
            &GenerateOptions::default().max_new_tokens(48),
            |token, _| {
                if token != TOKEN_NONE {
                    again.push(token);
                }
                true
            },
        )
        .unwrap();
    assert_eq!(again, golden.generated_ids);
}

#[test]
fn f16_kv_cache_session_generates() {
    assert_eq!(SessionOptions::default().kv_type, KvType::F32);
    let rt = runtime();
    let model = model(rt);
    let options = SessionOptions::default()
        .sampler(SamplerOptions::greedy())
        .kv_type(KvType::F16);
    let mut session = model.new_session_with(&options).unwrap();
    let (ids, text, stats) = generate(&mut session, "Once upon a time", 16);
    assert_eq!(ids.len(), 16);
    assert!(!text.is_empty());
    assert_eq!(stats.stop_reason, StopReason::MaxTokens);
}

#[test]
fn bad_model_path_is_not_found_with_message() {
    let rt = runtime();
    let err = rt.load_model("/nonexistent/dir/model.gguf").unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    assert!(
        err.message().contains("/nonexistent/dir/model.gguf"),
        "message: {}",
        err.message()
    );
    assert!(err.to_string().starts_with("NOT_FOUND: "), "{err}");
    assert_eq!(err.raw_code(), kestrel::sys::KESTREL_STATUS_NOT_FOUND);
}

#[test]
fn unknown_device_is_not_found() {
    let rt = runtime();
    let err = rt
        .load_model_with(
            common::stories260k(),
            &ModelOptions::default().device("no-such-device"),
        )
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    assert!(
        err.message().contains("no-such-device"),
        "message: {}",
        err.message()
    );
}

#[test]
fn invalid_arguments_carry_code_and_message() {
    let rt = runtime();
    let model = model(rt);
    let mut session = greedy_session(&model);
    let err = session
        .generate("", &GenerateOptions::default(), |_, _| true)
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(!err.message().is_empty());

    let err = model.detokenize(&[1_000_000], false).unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err}");

    let err = session.logits().unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");

    let err = session
        .generate(
            "hi",
            &GenerateOptions::default().stop_string("a\0b"),
            |_, _| true,
        )
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
}

#[test]
fn closure_returning_false_stops_early() {
    let rt = runtime();
    let model = model(rt);
    let mut session = greedy_session(&model);
    let mut seen = Vec::new();
    let stats = session
        .generate(
            "Once upon a time",
            &GenerateOptions::default().max_new_tokens(48),
            |token, _| {
                seen.push(token);
                seen.len() < 5
            },
        )
        .unwrap();
    assert_eq!(seen, common::golden_first_case().generated_ids[..5]);
    assert_eq!(stats.stop_reason, StopReason::Callback);
    assert_eq!(stats.n_generated_tokens, 5);
}

#[test]
fn stop_string_ends_generation() {
    let rt = runtime();
    let model = model(rt);
    let mut session = greedy_session(&model);
    let (text, stats) = session
        .generate_text(
            "Once upon a time",
            &GenerateOptions::default()
                .max_new_tokens(48)
                .stop_string(" Lily"),
        )
        .unwrap();
    assert_eq!(stats.stop_reason, StopReason::StopString);
    assert_eq!(text, ", there was a little girl named");
}

#[test]
fn cancel_from_another_thread() {
    let rt = runtime();
    let model = model(rt);
    // Context large enough that the run cannot end on its own before the cancel lands.
    let mut session = model
        .new_session_with(
            &SessionOptions::default()
                .sampler(SamplerOptions::greedy())
                .context_length(256),
        )
        .unwrap();
    let handle = session.cancel_handle();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (cancelled_tx, cancelled_rx) = mpsc::channel::<()>();
    let canceller = thread::spawn(move || {
        started_rx.recv().unwrap();
        assert!(handle.cancel(), "session is alive while generating");
        cancelled_tx.send(()).unwrap();
        handle
    });
    let mut n = 0u32;
    let result = session.generate(
        "Once upon a time",
        &GenerateOptions::default().max_new_tokens(200),
        |_, _| {
            n += 1;
            if n == 3 {
                started_tx.send(()).unwrap();
                // Wait until the other thread has cancelled, so the cancel hits this running generate.
                cancelled_rx.recv().unwrap();
            }
            true
        },
    );
    let err = result.unwrap_err();
    assert_eq!(err.code(), Code::Cancelled, "{err}");
    assert!(n < 200, "generated {n} tokens after cancel");
    let handle = canceller.join().unwrap();

    // The session still works after a cancel, and a cancel without a running generate is not
    // remembered.
    assert!(handle.cancel());
    let (ids, _, _) = generate(&mut session, "Once upon a time", 8);
    assert_eq!(ids, common::golden_first_case().generated_ids[..8]);

    // A handle outlives its session harmlessly.
    drop(session);
    assert!(!handle.is_alive());
    assert!(!handle.cancel());
}

#[test]
fn tokenize_round_trip() {
    let rt = runtime();
    let model = model(rt);
    for text in [
        "Once upon a time",
        "Lily and Tom went to the park. They saw a big dog!",
        "a  b",
        "x",
    ] {
        let ids = model.tokenize(text, true).unwrap();
        assert_eq!(ids[0], model.info().unwrap().bos_id);
        assert_eq!(model.detokenize(&ids, true).unwrap(), text);
        let no_bos = model.tokenize(text, false).unwrap();
        assert_eq!(&ids[1..], &no_bos[..]);
    }
    let ids = model.tokenize("Once upon a time", false).unwrap();
    let pieces: Vec<u8> = ids
        .iter()
        .flat_map(|&t| model.token_to_piece(t).unwrap())
        .collect();
    assert_eq!(
        String::from_utf8(pieces).unwrap().replace('\u{2581}', " "),
        " Once upon a time"
    );
    assert!(model.tokenize("", false).unwrap().is_empty());
}

#[test]
fn low_level_decode_logits_sample_truncate() {
    let golden = common::golden_first_case();
    let rt = runtime();
    let model = model(rt);
    let info = model.info().unwrap();
    let mut session = greedy_session(&model);
    assert_eq!(session.token_count(), 0);
    session.decode(&golden.prompt_ids).unwrap();
    assert_eq!(session.token_count(), golden.prompt_ids.len());
    let logits = session.logits().unwrap();
    assert_eq!(logits.len(), info.vocab_size as usize);
    let argmax = logits.iter().enumerate().fold(
        0usize,
        |best, (i, &v)| if v > logits[best] { i } else { best },
    );
    assert_eq!(argmax as i32, golden.generated_ids[0]);
    // Greedy sampling and decoding step by step reproduce the golden ids.
    let mut ids = Vec::new();
    for _ in 0..8 {
        let token = session.sample().unwrap();
        ids.push(token);
        session.decode(&[token]).unwrap();
    }
    assert_eq!(ids, golden.generated_ids[..8]);
    // Roll back to the prompt and step again: same first token.
    session.truncate(golden.prompt_ids.len() - 1).unwrap();
    session
        .decode(&golden.prompt_ids[golden.prompt_ids.len() - 1..])
        .unwrap();
    assert_eq!(session.sample().unwrap(), golden.generated_ids[0]);
    assert_eq!(
        session.truncate(1_000).unwrap_err().code(),
        Code::OutOfRange
    );
}

#[test]
fn plugins_devices_and_model_info() {
    let rt = runtime();
    let plugins = rt.plugins().unwrap();
    assert!(
        plugins
            .iter()
            .any(|p| p.name == "ref" && p.loaded && p.device_count >= 1),
        "{plugins:?}"
    );
    let devices = rt.devices().unwrap();
    let reference = devices
        .iter()
        .find(|d| d.name == "ref")
        .expect("device ref");
    assert_eq!(reference.kind, DeviceKind::Cpu);
    assert!(reference.weight_dtype_mask & kestrel::sys::KESTREL_DTYPE_MASK_F32 != 0);

    let model = rt
        .load_model_with(
            common::stories260k(),
            &ModelOptions::default().device("ref"),
        )
        .unwrap();
    let info = model.info().unwrap();
    assert_eq!(info.architecture, "llama");
    assert_eq!(info.device, "ref");
    assert_eq!(info.vocab_size, 512);
    let types = model.tensor_types().unwrap();
    assert_eq!(
        types.iter().map(|t| t.n_tensors).sum::<u32>(),
        info.n_tensors
    );
    assert!(info.runnable && info.unsupported.is_empty());
    assert_eq!(info.tokenizer_model, "llama");
    // Metadata only: the same description, no weights; a session is refused.
    let meta = rt
        .load_model_with(
            common::stories260k(),
            &ModelOptions::default().device("ref").metadata_only(true),
        )
        .unwrap();
    let meta_info = meta.info().unwrap();
    assert_eq!(meta_info.n_layers, info.n_layers);
    assert!(meta_info.runnable);
    assert!(meta.new_session().is_err());
    assert_eq!(kestrel::version_number(), kestrel::HEADER_VERSION_NUMBER);
    assert!(!kestrel::version().is_empty());
}

#[test]
fn panic_in_closure_propagates() {
    let rt = runtime();
    let model = model(rt);
    let mut session = greedy_session(&model);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        session.generate("Once upon a time", &GenerateOptions::default(), |_, _| {
            panic!("boom")
        })
    }));
    let payload = result.unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom"));
    // The session is still usable.
    let (ids, _, _) = generate(&mut session, "Once upon a time", 4);
    assert_eq!(ids, common::golden_first_case().generated_ids[..4]);
}

#[test]
fn progress_callback_reaches_one_and_can_cancel() {
    let rt = runtime();
    let mut last = 0.0f32;
    rt.load_model_with_progress(common::stories260k(), &ModelOptions::default(), |p| {
        assert!(p >= last);
        last = p;
        true
    })
    .unwrap();
    assert_eq!(last, 1.0);
    let err = rt
        .load_model_with_progress(common::stories260k(), &ModelOptions::default(), |_| false)
        .unwrap_err();
    assert_eq!(err.code(), Code::Cancelled, "{err}");
}

#[test]
fn speculative_draft_keeps_golden_ids() {
    let golden = common::golden_first_case();
    let rt = runtime();
    let model = model(rt);
    let draft = rt
        .load_model(common::models_dir().join("stories260K-first4L.gguf"))
        .expect("load the draft");
    let options = SessionOptions::default()
        .sampler(SamplerOptions::greedy())
        .speculative(kestrel::SpeculativeOptions::new(kestrel::SpecMethod::Draft).max_draft_tokens(4).draft_model(&draft));
    drop(draft); // the session keeps it alive
    let mut session = model.new_session_with(&options).expect("session");
    let (ids, _, _) = generate(&mut session, &golden.prompt, golden.generated_ids.len() as u32);
    assert_eq!(ids, golden.generated_ids);
    let st = session.speculative_stats().unwrap();
    assert!(st.drafted > 0 && st.accepted > 0, "{:?}", st);
    assert_eq!(st.drafted_by_method[2], st.drafted);
}

#[test]
fn chat_template_and_special_tokens() {
    let rt = runtime();
    let model = model(rt);
    // stories260K carries no chat template: NotFound naming the key, unless one is given.
    let messages = [
        kestrel::ChatMessage::new("system", "Be brief."),
        kestrel::ChatMessage::new("user", "Hi"),
    ];
    let err = model.apply_chat_template(&messages).unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("tokenizer.chat_template"), "{}", err.message());
    let options = kestrel::ChatTemplateOptions::default().template(
        "{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}</s>{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}",
    );
    let text = model.apply_chat_template_with(&messages, &options).unwrap();
    assert_eq!(text, "<system>Be brief.</s><user>Hi</s><assistant>");
    let no_gen = model
        .apply_chat_template_with(&messages, &options.clone().add_generation_prompt(false))
        .unwrap();
    assert_eq!(no_gen, "<system>Be brief.</s><user>Hi</s>");
    let bad = kestrel::ChatTemplateOptions::default().template("{% if %}");
    assert_eq!(
        model.apply_chat_template_with(&messages, &bad).unwrap_err().code(),
        Code::InvalidArgument
    );
    // "</s>" is EOS: a token only with parse_special.
    let info = model.tokenizer_info().unwrap();
    assert_eq!(info.kind, "spm");
    assert!(model.end_of_generation_tokens().unwrap().contains(&info.eos_id));
    let special = model.tokenize_special("a</s>", false, true).unwrap();
    assert_eq!(*special.last().unwrap(), info.eos_id);
    let plain = model.tokenize_special("a</s>", false, false).unwrap();
    assert!(!plain.contains(&info.eos_id));
    assert_eq!(model.token_to_piece_special(info.eos_id, true).unwrap(), b"</s>");
    assert!(model.token_to_piece_special(info.eos_id, false).unwrap().is_empty());
}

#[test]
fn metadata_only_model_tokenizes_but_has_no_session() {
    let rt = runtime();
    let vocab = rt
        .load_model_with(common::stories260k(), &ModelOptions::default().metadata_only(true))
        .unwrap();
    let full = model(rt);
    assert_eq!(vocab.tokenize("Once upon a time", true).unwrap(), full.tokenize("Once upon a time", true).unwrap());
    assert_eq!(vocab.new_session().err().map(|e| e.code()), Some(Code::FailedPrecondition));
}
