//! Ownership and threads: a model outlives its runtime, is shared by threads (`Clone` + `Sync`),
//! and a session moves to another thread (`Send`) and keeps its model alive.
//! A test binary of its own because it drops its runtime (see api.rs).
mod common;

use std::thread;

use common::{generate, greedy_session};
use kestrel::Runtime;

#[test]
fn model_shared_across_threads_and_outlives_runtime() {
    let golden = common::golden_first_case();
    let rt = Runtime::new().unwrap();
    let model = rt.load_model(common::stories260k()).unwrap();
    drop(rt); // models keep what they need of the runtime
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let model = model.clone();
            thread::spawn(move || {
                let mut session = greedy_session(&model);
                generate(&mut session, "Once upon a time", 16).0
            })
        })
        .collect();
    let mut session = greedy_session(&model);
    let handle = session.cancel_handle();
    drop(model); // the session holds its own reference
    let moved = thread::spawn(move || generate(&mut session, "Once upon a time", 16).0);
    for worker in workers.into_iter().chain([moved]) {
        assert_eq!(worker.join().unwrap(), golden.generated_ids[..16]);
    }
    // The session was dropped on its thread; its cancel handle noticed.
    assert!(!handle.is_alive());
}
