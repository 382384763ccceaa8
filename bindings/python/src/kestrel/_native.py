"""libkestrel through ctypes: finding the library, the C structs and the function prototypes.

Only the stable C ABI (api/include/kestrel/*.h) is used. Every options/info struct here is the C
struct's layout (or a prefix of it): its struct_size is this module's sizeof, so the library
writes and reads only the fields declared here (the C API's rule for older clients).

Where the library is looked for, in order:
  1. KESTREL_LIBRARY: the full path of libkestrel.so.
  2. KESTREL_LIB_DIR: the folder holding it (a CMake build's lib/, or <prefix>/lib).
  3. The folder recorded when the package was installed (_build_config.py, from KESTREL_LIB_DIR or
     pkg-config at `pip install` time).
  4. `pkg-config --variable=libdir kestrel`.
  5. The dynamic loader's own path (libkestrel.so.0 installed in /usr/lib, /usr/local/lib, ...).
"""
import ctypes
import os
import subprocess

from ctypes import (POINTER, Structure, c_bool, c_char, c_char_p, c_double, c_float, c_int,
                    c_int32, c_size_t, c_uint16, c_uint32, c_uint64, c_void_p)

SONAME = "libkestrel.so.0"


def _pkg_config_libdir():
    try:
        out = subprocess.run(["pkg-config", "--variable=libdir", "kestrel"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    d = out.stdout.strip()
    return d if out.returncode == 0 and d else None


def _recorded_libdir():
    try:
        from . import _build_config  # written by setup.py at install time
    except ImportError:
        return None
    return getattr(_build_config, "LIB_DIR", None) or None


def _candidates():
    if os.environ.get("KESTREL_LIBRARY"):
        yield "KESTREL_LIBRARY", os.environ["KESTREL_LIBRARY"]
    for source, d in (("KESTREL_LIB_DIR", os.environ.get("KESTREL_LIB_DIR")),
                      ("the folder recorded at install", _recorded_libdir()),
                      ("pkg-config", _pkg_config_libdir())):
        if d:
            for name in ("libkestrel.so", SONAME):
                path = os.path.join(d, name)
                if os.path.exists(path):
                    yield source, path
                    break
            else:
                yield source, os.path.join(d, "libkestrel.so")
    yield "the dynamic loader's path", SONAME


def _load():
    tried = []
    for source, path in _candidates():
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            tried.append(f"{source}: {e}")
    raise ImportError("kestrel: cannot load libkestrel.so; tried " + "; ".join(tried) +
                      ". Set KESTREL_LIB_DIR to the folder that holds it (a build's lib/ or an "
                      "install's <prefix>/lib), or install Kestrel where pkg-config finds it.")


lib, LIBRARY_PATH = _load()

# ---- Structs (api/include/kestrel/*.h) ---------------------------------------------------------

LOG_FN = ctypes.CFUNCTYPE(None, c_void_p, c_int, POINTER(c_char), c_size_t)
PROGRESS_FN = ctypes.CFUNCTYPE(c_bool, c_void_p, c_float)
TOKEN_FN = ctypes.CFUNCTYPE(c_bool, c_void_p, c_int32, POINTER(c_char), c_size_t)
ENGINE_TOKEN_FN = ctypes.CFUNCTYPE(c_bool, c_void_p, c_uint64, c_uint32, c_int32, POINTER(c_char),
                                   c_size_t)


class RuntimeOptions(Structure):
    _fields_ = [("struct_size", c_uint32), ("plugin_path", c_char_p), ("log_callback", LOG_FN),
                ("log_user_data", c_void_p), ("log_level", c_int)]


class PluginInfo(Structure):
    _fields_ = [("struct_size", c_uint32), ("name", c_char_p), ("path", c_char_p),
                ("version", c_char_p), ("loaded", c_bool), ("skip_reason", c_char_p),
                ("api_major", c_uint16), ("api_minor", c_uint16), ("device_count", c_uint32)]


class DeviceInfo(Structure):
    _fields_ = [("struct_size", c_uint32), ("name", c_char_p), ("plugin", c_char_p),
                ("description", c_char_p), ("kind", c_int), ("memory_bytes", c_uint64),
                ("host_visible", c_bool), ("async_", c_bool), ("dtype_mask", c_uint64),
                ("weight_dtype_mask", c_uint64)]


class ModelOptions(Structure):
    _fields_ = [("struct_size", c_uint32), ("device", c_char_p), ("use_mmap", c_bool),
                ("progress_callback", PROGRESS_FN), ("progress_user_data", c_void_p),
                ("metadata_only", c_bool), ("memory_budget", c_char_p),
                ("expert_cache_policy", c_uint32), ("plan_context_length", c_uint32),
                ("plan_sequences", c_uint32), ("offload_flags", c_uint32)]


class MemoryPlanInfo(Structure):
    _fields_ = [("struct_size", c_uint32), ("device", c_char_p), ("device_budget_bytes", c_uint64),
                ("host_budget_bytes", c_uint64), ("resident_bytes", c_uint64),
                ("resident_tensors", c_uint32), ("offloaded_tensors", c_uint32),
                ("experts_offloaded", c_bool), ("expert_bytes", c_uint64),
                ("expert_slot_bytes", c_uint64), ("experts_total", c_uint32),
                ("expert_slots", c_uint32), ("expert_cache_bytes", c_uint64), ("kv_bytes", c_uint64),
                ("kv_tokens", c_uint32), ("n_streamed_layers", c_uint32),
                ("host_swap_bytes", c_uint64), ("device_total_bytes", c_uint64),
                ("streamed_bytes", c_uint64), ("stream_ring_bytes", c_uint64),
                ("stream_slots", c_uint32), ("stream_prefetch_distance", c_uint32),
                ("host_resident_bytes", c_uint64), ("host_resident_tensors", c_uint32)]


class OffloadStats(Structure):
    _fields_ = [("struct_size", c_uint32), ("expert_hits", c_uint64), ("expert_misses", c_uint64),
                ("disk_bytes_read", c_uint64), ("disk_read_seconds", c_double),
                ("expert_cache_bytes", c_uint64), ("expert_cache_peak_bytes", c_uint64),
                ("expert_cache_budget_bytes", c_uint64), ("n_layers", c_uint32),
                ("policy", c_uint32), ("io_mode", c_char_p), ("expert_slots", c_uint32),
                ("expert_prefetch_buffers", c_uint32), ("expert_prefetches", c_uint64),
                ("expert_prefetch_hits", c_uint64), ("expert_prefetch_wait_seconds", c_double),
                ("expert_host_runs", c_uint64), ("expert_host_seconds", c_double)]


class MemoryStats(Structure):
    _fields_ = [("struct_size", c_uint32), ("device", c_char_p), ("device_bytes", c_uint64),
                ("device_peak_bytes", c_uint64), ("host_to_device_bytes", c_uint64),
                ("device_to_host_bytes", c_uint64), ("expert_bytes_read", c_uint64),
                ("expert_read_seconds", c_double), ("streamed_bytes_copied", c_uint64),
                ("stream_copy_wait_seconds", c_double)]


class ModelInfo(Structure):
    _fields_ = [("struct_size", c_uint32), ("architecture", c_char_p), ("name", c_char_p),
                ("device", c_char_p), ("n_params", c_uint64), ("weight_bytes", c_uint64),
                ("n_layers", c_uint32), ("n_heads", c_uint32), ("n_kv_heads", c_uint32),
                ("n_embd", c_uint32), ("n_ff", c_uint32), ("head_dim", c_uint32),
                ("context_length", c_uint32), ("vocab_size", c_uint32), ("bos_id", c_int32),
                ("eos_id", c_int32), ("unk_id", c_int32), ("pad_id", c_int32), ("add_bos", c_bool),
                ("rope_freq_base", c_float), ("rms_norm_eps", c_float), ("n_tensors", c_uint32)]


class SamplerOptions(Structure):
    _fields_ = [("struct_size", c_uint32), ("temperature", c_float), ("top_k", c_int32),
                ("top_p", c_float), ("min_p", c_float), ("repetition_penalty", c_float),
                ("repetition_window", c_int32), ("seed", c_uint64)]


class SessionOptions(Structure):
    _fields_ = [("struct_size", c_uint32), ("context_length", c_uint32), ("kv_block_size", c_uint32),
                ("sampler", POINTER(SamplerOptions)), ("n_threads", c_uint32), ("kv_type", c_uint64)]


class GenerateOptions(Structure):
    _fields_ = [("struct_size", c_uint32), ("max_new_tokens", c_uint32),
                ("stop_strings", POINTER(c_char_p)), ("n_stop_strings", c_size_t),
                ("on_token", TOKEN_FN), ("user_data", c_void_p), ("add_bos", c_bool),
                ("keep_context", c_bool), ("parse_special", c_uint64), ("n_probs", c_uint32),
                ("on_logprobs", c_void_p), ("grammar", c_char_p), ("json_schema", c_char_p)]


class GenerateStats(Structure):
    _fields_ = [("struct_size", c_uint32), ("n_prompt_tokens", c_uint32),
                ("n_generated_tokens", c_uint32), ("prefill_ms", c_double), ("decode_ms", c_double),
                ("prefill_tokens_per_s", c_double), ("decode_tokens_per_s", c_double),
                ("stop_reason", c_int)]


class EngineOptions(Structure):
    _fields_ = [("struct_size", c_uint32), ("kv_cache_bytes", c_uint64), ("kv_block_size", c_uint32),
                ("max_batch_tokens", c_uint32), ("max_sequences", c_uint32), ("prefix_cache", c_bool),
                ("context_length", c_uint32), ("n_threads", c_uint32), ("kv_type", c_uint64)]


class RequestOptions(Structure):
    _fields_ = [("struct_size", c_uint32), ("max_new_tokens", c_uint32),
                ("sampler", POINTER(SamplerOptions)), ("stop_strings", POINTER(c_char_p)),
                ("n_stop_strings", c_size_t), ("on_token", ENGINE_TOKEN_FN), ("user_data", c_void_p),
                ("priority", c_int32), ("n", c_uint32), ("add_bos", c_bool),
                ("parse_special", c_uint64), ("speculative", c_void_p), ("n_probs", c_uint32),
                ("on_logprobs", c_void_p), ("grammar", c_char_p), ("json_schema", c_char_p)]


class EngineResult(Structure):
    _fields_ = [("struct_size", c_uint32), ("state", c_int), ("status_code", c_int),
                ("stop_reason", c_int), ("n_samples", c_uint32), ("n_prompt_tokens", c_uint32),
                ("n_generated_tokens", c_uint32), ("n_cached_prompt_tokens", c_uint32),
                ("n_preemptions", c_uint32), ("queue_ms", c_double),
                ("time_to_first_token_ms", c_double), ("total_ms", c_double)]


class EngineStats(Structure):
    _fields_ = [("struct_size", c_uint32), ("n_running", c_uint32), ("n_waiting", c_uint32),
                ("n_finished", c_uint64), ("kv_blocks_total", c_uint32), ("kv_blocks_used", c_uint32),
                ("kv_blocks_free", c_uint32), ("kv_blocks_cached", c_uint32),
                ("kv_block_size", c_uint32), ("prefix_cache_lookups", c_uint64),
                ("prefix_cache_hits", c_uint64), ("prefix_cache_hit_rate", c_double),
                ("prefill_tokens_computed", c_uint64), ("prefill_tokens_reused", c_uint64),
                ("decode_tokens", c_uint64), ("generated_tokens", c_uint64), ("steps", c_uint64),
                ("preemptions", c_uint64), ("busy_ms", c_double), ("tokens_per_s", c_double),
                ("kv_waste_fraction", c_double)]


def new(struct_type, init=None):
    """A zeroed struct with struct_size set; `init` (an *_options_init_sized function) fills the
    library's defaults."""
    s = struct_type()
    if init is not None:
        init(ctypes.byref(s), ctypes.sizeof(s))
    s.struct_size = ctypes.sizeof(s)
    return s


# ---- Prototypes --------------------------------------------------------------------------------

STATUS = c_void_p  # kestrel_status_t*
_H = c_void_p      # every opaque handle


def _proto(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


kestrel_version = _proto("kestrel_version", c_char_p)
kestrel_version_number = _proto("kestrel_version_number", c_uint32)
kestrel_status_code = _proto("kestrel_status_code", c_int, STATUS)
kestrel_status_message = _proto("kestrel_status_message", c_char_p, STATUS)
kestrel_status_code_name = _proto("kestrel_status_code_name", c_char_p, c_int)
kestrel_status_free = _proto("kestrel_status_free", None, STATUS)

kestrel_runtime_options_init_sized = _proto("kestrel_runtime_options_init_sized", None, c_void_p, c_size_t)
kestrel_runtime_create = _proto("kestrel_runtime_create", STATUS, POINTER(RuntimeOptions), POINTER(_H))
kestrel_runtime_destroy = _proto("kestrel_runtime_destroy", None, _H)
kestrel_runtime_plugin_count = _proto("kestrel_runtime_plugin_count", c_size_t, _H)
kestrel_runtime_plugin_info = _proto("kestrel_runtime_plugin_info", STATUS, _H, c_size_t, POINTER(PluginInfo))
kestrel_runtime_device_count = _proto("kestrel_runtime_device_count", c_size_t, _H)
kestrel_runtime_device_info = _proto("kestrel_runtime_device_info", STATUS, _H, c_size_t, POINTER(DeviceInfo))

kestrel_model_options_init_sized = _proto("kestrel_model_options_init_sized", None, c_void_p, c_size_t)
kestrel_model_load = _proto("kestrel_model_load", STATUS, _H, c_char_p, c_size_t, POINTER(ModelOptions),
                            POINTER(_H))
kestrel_model_retain = _proto("kestrel_model_retain", None, _H)
kestrel_model_release = _proto("kestrel_model_release", None, _H)
kestrel_model_get_info = _proto("kestrel_model_get_info", STATUS, _H, POINTER(ModelInfo))
kestrel_model_get_memory_plan = _proto("kestrel_model_get_memory_plan", STATUS, _H,
                                       POINTER(MemoryPlanInfo))
kestrel_model_get_offload_stats = _proto("kestrel_model_get_offload_stats", STATUS, _H,
                                         POINTER(OffloadStats))
kestrel_model_get_expert_layer_stats = _proto("kestrel_model_get_expert_layer_stats", STATUS, _H,
                                              c_uint32, POINTER(c_uint64), POINTER(c_uint64))
kestrel_model_reset_offload_stats = _proto("kestrel_model_reset_offload_stats", STATUS, _H)
kestrel_model_get_memory_stats = _proto("kestrel_model_get_memory_stats", STATUS, _H,
                                        POINTER(MemoryStats))
kestrel_tokenize = _proto("kestrel_tokenize", STATUS, _H, c_char_p, c_size_t, c_bool, POINTER(c_int32),
                          c_size_t, POINTER(c_size_t))
kestrel_detokenize = _proto("kestrel_detokenize", STATUS, _H, POINTER(c_int32), c_size_t, c_bool,
                            POINTER(c_char), c_size_t, POINTER(c_size_t))
kestrel_token_to_piece = _proto("kestrel_token_to_piece", STATUS, _H, c_int32, POINTER(c_char), c_size_t,
                                POINTER(c_size_t))

kestrel_sampler_options_init_sized = _proto("kestrel_sampler_options_init_sized", None, c_void_p, c_size_t)
kestrel_session_options_init_sized = _proto("kestrel_session_options_init_sized", None, c_void_p, c_size_t)
kestrel_session_create = _proto("kestrel_session_create", STATUS, _H, POINTER(SessionOptions), POINTER(_H))
kestrel_session_destroy = _proto("kestrel_session_destroy", None, _H)
kestrel_generate_options_init_sized = _proto("kestrel_generate_options_init_sized", None, c_void_p, c_size_t)
kestrel_session_generate = _proto("kestrel_session_generate", STATUS, _H, c_char_p, c_size_t,
                                  POINTER(GenerateOptions), POINTER(GenerateStats))
kestrel_session_generate_tokens = _proto("kestrel_session_generate_tokens", STATUS, _H, POINTER(c_int32),
                                         c_size_t, POINTER(GenerateOptions), POINTER(GenerateStats))
kestrel_session_cancel = _proto("kestrel_session_cancel", None, _H)
kestrel_session_token_count = _proto("kestrel_session_token_count", c_size_t, _H)

kestrel_engine_options_init_sized = _proto("kestrel_engine_options_init_sized", None, c_void_p, c_size_t)
kestrel_engine_create = _proto("kestrel_engine_create", STATUS, _H, POINTER(EngineOptions), POINTER(_H))
kestrel_engine_destroy = _proto("kestrel_engine_destroy", None, _H)
kestrel_engine_request_options_init_sized = _proto("kestrel_engine_request_options_init_sized", None,
                                                   c_void_p, c_size_t)
kestrel_engine_submit = _proto("kestrel_engine_submit", STATUS, _H, c_char_p, c_size_t,
                               POINTER(RequestOptions), POINTER(c_uint64))
kestrel_engine_submit_tokens = _proto("kestrel_engine_submit_tokens", STATUS, _H, POINTER(c_int32), c_size_t,
                                      POINTER(RequestOptions), POINTER(c_uint64))
kestrel_engine_step = _proto("kestrel_engine_step", STATUS, _H, POINTER(c_uint32))
kestrel_engine_start = _proto("kestrel_engine_start", STATUS, _H)
kestrel_engine_stop = _proto("kestrel_engine_stop", None, _H)
kestrel_engine_wait = _proto("kestrel_engine_wait", STATUS, _H, c_uint64, ctypes.c_int64)
kestrel_engine_cancel = _proto("kestrel_engine_cancel", STATUS, _H, c_uint64)
kestrel_engine_release_request = _proto("kestrel_engine_release_request", STATUS, _H, c_uint64)
kestrel_engine_request_result = _proto("kestrel_engine_request_result", STATUS, _H, c_uint64, c_uint32,
                                       POINTER(EngineResult))
kestrel_engine_request_tokens = _proto("kestrel_engine_request_tokens", STATUS, _H, c_uint64, c_uint32,
                                       POINTER(c_int32), c_size_t, POINTER(c_size_t))
kestrel_engine_request_text = _proto("kestrel_engine_request_text", STATUS, _H, c_uint64, c_uint32,
                                     POINTER(c_char), c_size_t, POINTER(c_size_t))
kestrel_engine_get_stats = _proto("kestrel_engine_get_stats", STATUS, _H, POINTER(EngineStats))
