"""Memory offload from Python: tiny-moe-f32 under a host budget that leaves its experts in the
file gives the resident greedy ids; the plan and statistics carry the C API's numbers."""
import os

import pytest

from conftest import MODELS_DIR

TINY_MOE = os.path.join(MODELS_DIR, "tiny-moe-f32.gguf")


def greedy(model, prompt, n):
    s = model.new_session(temperature=0, context_length=64)
    return s.complete(prompt, max_new_tokens=n).tokens


@pytest.fixture(scope="module")
def sizes(runtime):
    if not os.path.isfile(TINY_MOE):
        pytest.skip(f"model not found: {TINY_MOE}")
    plan = runtime.load_model(TINY_MOE, device="cpu", metadata_only=True,
                              memory_budget="host=unlimited", plan_context_length=64).memory_plan()
    assert not plan.experts_offloaded and plan.experts_total == 16
    return plan


def test_budgeted_moe_model_reports_plan_and_stats(kestrel, runtime, sizes):
    slot = sizes.expert_bytes // sizes.experts_total
    host = sizes.resident_bytes - sizes.expert_bytes + sizes.kv_bytes + 10 * slot
    resident = runtime.load_model(TINY_MOE, device="cpu")
    with pytest.raises(kestrel.FailedPreconditionError):
        resident.offload_stats()
    with pytest.raises(kestrel.FailedPreconditionError):
        resident.memory_plan()
    assert resident.memory_stats().device_bytes > 0

    m = runtime.load_model(TINY_MOE, device="cpu", memory_budget=f"host={host}",
                           expert_cache_policy="lfu", plan_context_length=64)
    plan = m.memory_plan()
    assert plan.experts_offloaded and plan.expert_slots == 9 and plan.device_budget_bytes == host
    prompt = [1, 5, 9, 13]
    assert greedy(m, prompt, 16) == greedy(resident, prompt, 16)
    st = m.offload_stats()
    assert st.policy == "lfu" and st.n_layers == 4 and len(st.layers) == 4
    assert st.expert_misses > 0
    assert sum(layer.hits for layer in st.layers) == st.expert_hits
    assert sum(layer.misses for layer in st.layers) == st.expert_misses
    assert st.expert_cache_peak_bytes <= st.expert_cache_budget_bytes
    assert st.expert_prefetch_buffers == 2 and st.expert_slots == 7  # read-ahead on by default
    assert st.expert_prefetch_hits <= st.expert_prefetches
    assert st.io_mode
    assert st.expert_host_runs == 0  # the model's device is the host
    mem = m.memory_stats()
    assert mem.device == "cpu" and mem.expert_bytes_read == st.disk_bytes_read
    m.reset_offload_stats()
    assert m.offload_stats().expert_misses == 0

    off = runtime.load_model(TINY_MOE, device="cpu", memory_budget=f"host={host}",
                             plan_context_length=64, offload_flags=kestrel.OFFLOAD_FLAG_NO_PREFETCH)
    assert greedy(off, prompt, 16) == greedy(resident, prompt, 16)
    st = off.offload_stats()
    assert st.expert_prefetch_buffers == 0 and st.expert_prefetches == 0 and st.expert_slots == 9


def test_impossible_budget_names_the_numbers(kestrel, runtime, sizes):
    with pytest.raises(kestrel.ResourceExhaustedError) as e:
        runtime.load_model(TINY_MOE, device="cpu", memory_budget="host=1K", plan_context_length=64)
    assert "host" in str(e.value)
    with pytest.raises(ValueError):
        runtime.load_model(TINY_MOE, device="cpu", expert_cache_policy="fifo")
