//! Memory offload through the safe API: tiny-moe-f32 under a host budget that leaves its experts
//! in the file gives the resident greedy ids, and the plan and statistics carry the C API's
//! numbers (the read-ahead on by default, off with OFFLOAD_FLAG_NO_PREFETCH).
mod common;

use kestrel::{
    Code, ExpertCachePolicy, Model, ModelOptions, Runtime, SessionOptions, OFFLOAD_FLAG_NO_PREFETCH,
};

fn greedy(model: &Model, prompt: &[i32], n: usize) -> Vec<i32> {
    let options = SessionOptions::default()
        .context_length(64)
        .sampler(kestrel::SamplerOptions::greedy());
    let mut s = model.new_session_with(&options).expect("session");
    s.decode(prompt).expect("decode prompt");
    let mut ids = Vec::new();
    for _ in 0..n {
        let t = s.sample().expect("sample");
        ids.push(t);
        s.decode(&[t]).expect("decode");
    }
    ids
}

#[test]
fn budgeted_moe_model_reports_plan_and_stats() {
    let path = common::models_dir().join("tiny-moe-f32.gguf");
    let rt = Runtime::new().expect("runtime");
    let meta = ModelOptions::default()
        .device("cpu")
        .metadata_only(true)
        .memory_budget("host=unlimited")
        .plan_context_length(64);
    let full = rt.load_model_with(&path, &meta).unwrap().memory_plan().unwrap();
    assert!(!full.experts_offloaded);
    assert_eq!(full.experts_total, 16);
    let slot = full.expert_bytes / u64::from(full.experts_total);
    let host = full.resident_bytes - full.expert_bytes + full.kv_bytes + 10 * slot;

    let resident = rt
        .load_model_with(&path, &ModelOptions::default().device("cpu"))
        .unwrap();
    assert_eq!(resident.offload_stats().unwrap_err().code(), Code::FailedPrecondition);
    assert!(resident.memory_stats().unwrap().device_bytes > 0);
    let options = ModelOptions::default()
        .device("cpu")
        .memory_budget(format!("host={host}"))
        .expert_cache_policy(ExpertCachePolicy::Lfu)
        .plan_context_length(64);
    let m = rt.load_model_with(&path, &options).unwrap();
    let plan = m.memory_plan().unwrap();
    assert!(plan.experts_offloaded);
    assert_eq!(plan.expert_slots, 9);
    assert_eq!(plan.device_budget_bytes, host);
    let prompt = [1, 5, 9, 13];
    assert_eq!(greedy(&m, &prompt, 16), greedy(&resident, &prompt, 16));
    let st = m.offload_stats().unwrap();
    assert_eq!(st.policy, ExpertCachePolicy::Lfu);
    assert_eq!(st.layers.len(), 4);
    assert!(st.expert_misses > 0);
    assert_eq!(st.layers.iter().map(|l| l.hits).sum::<u64>(), st.expert_hits);
    assert_eq!(st.layers.iter().map(|l| l.misses).sum::<u64>(), st.expert_misses);
    assert!(st.expert_cache_peak_bytes <= st.expert_cache_budget_bytes);
    assert_eq!((st.expert_prefetch_buffers, st.expert_slots), (2, 7));
    assert!(st.expert_prefetch_hits <= st.expert_prefetches);
    assert!(!st.io_mode.is_empty());
    assert_eq!(st.expert_host_runs, 0); // the model's device is the host
    let mem = m.memory_stats().unwrap();
    assert_eq!(mem.device, "cpu");
    assert_eq!(mem.expert_bytes_read, st.disk_bytes_read);
    m.reset_offload_stats().unwrap();
    assert_eq!(m.offload_stats().unwrap().expert_misses, 0);

    let off = rt
        .load_model_with(&path, &options.clone().offload_flags(OFFLOAD_FLAG_NO_PREFETCH))
        .unwrap();
    assert_eq!(greedy(&off, &prompt, 16), greedy(&resident, &prompt, 16));
    let st = off.offload_stats().unwrap();
    assert_eq!((st.expert_prefetch_buffers, st.expert_prefetches, st.expert_slots), (0, 0, 9));
}
