//! Kestrel Rust sample: load a model and stream a greedy generation.
//!
//!   kestrel_sample_rust MODEL.gguf [PROMPT] [N_TOKENS]
//!
//! Uses only the safe `kestrel` crate. Exit status: 0 success, 1 runtime error, 2 bad usage.
use std::io::Write;
use std::process::ExitCode;

use kestrel::{GenerateOptions, Runtime, RuntimeOptions, SamplerOptions, SessionOptions};

fn run(model_path: &str, prompt: &str, n_tokens: u32) -> kestrel::Result<()> {
    // 1. The runtime: finds the device plugins ($KESTREL_PLUGIN_PATH or next to the library);
    //    warnings from the library go to stderr.
    let runtime = Runtime::with_options(
        RuntimeOptions::new()
            .log_callback(|level, line| eprintln!("kestrel_sample_rust: [{level:?}] {line}")),
    )?;
    // 2. The model, on the default device.
    let model = runtime.load_model(model_path)?;
    let info = model.info()?;
    eprintln!(
        "kestrel_sample_rust: model '{}' ({}, {} layers, vocab {}) on device {}",
        info.name, info.architecture, info.n_layers, info.vocab_size, info.device
    );
    // 3. A session with greedy sampling.
    let mut session =
        model.new_session_with(&SessionOptions::default().sampler(SamplerOptions::greedy()))?;
    // 4. Generate, streaming each piece of text as soon as it is final.
    let mut stdout = std::io::stdout().lock();
    let _ = write!(stdout, "{prompt}");
    let mut streamed = 0u32;
    let stats = session.generate(
        prompt,
        &GenerateOptions::default().max_new_tokens(n_tokens),
        |_token, text| {
            streamed += 1;
            let _ = stdout.write_all(text.as_bytes());
            let _ = stdout.flush();
            true // keep going
        },
    )?;
    let _ = writeln!(stdout);
    eprintln!(
        "kestrel_sample_rust: {} prompt tokens ({:.1} tok/s), {} generated ({:.1} tok/s), {} streamed, stop: {:?}",
        stats.n_prompt_tokens,
        stats.prefill_tokens_per_s,
        stats.n_generated_tokens,
        stats.decode_tokens_per_s,
        streamed,
        stats.stop_reason
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 2 || args.len() > 4 {
        eprintln!(
            "usage: {} MODEL.gguf [PROMPT] [N_TOKENS]",
            args.first().map_or("kestrel_sample_rust", |s| s)
        );
        return ExitCode::from(2);
    }
    let prompt = args.get(2).map_or("Once upon a time", |s| s.as_str());
    let n_tokens = match args.get(3).map(|n| n.parse::<u32>()) {
        None => 32,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            eprintln!(
                "kestrel_sample_rust: N_TOKENS must be a number, got '{}'",
                args[3]
            );
            return ExitCode::from(2);
        }
    };
    if kestrel::version_number() != kestrel::HEADER_VERSION_NUMBER {
        eprintln!(
            "kestrel_sample_rust: warning: library {}, bindings {}",
            kestrel::version(),
            kestrel::HEADER_VERSION_NUMBER
        );
    }
    match run(&args[1], prompt, n_tokens) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kestrel_sample_rust: {e}");
            ExitCode::from(1)
        }
    }
}
