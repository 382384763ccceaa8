#!/usr/bin/env python3
"""Regenerates tests/models/testdata/llamacpp_cases.json: what llama.cpp itself produces on the two
real models (SmolLM2-135M-Instruct Q4_1, Gemma 3 270M Q4_K_M), the independent reference of the
`models` tests (tests/models/).

For each prompt, greedy ids from `llama-completion` (temperature 0), read back exactly from the
session file it writes with --prompt-cache-all (prompt ids + every sampled id), on
  * the quantized file itself ("quantized_ids": llama.cpp's 8-bit-activation CPU path), and
  * an F32 copy made with `llama-quantize --allow-requantize FILE COPY F32` ("f32_ids": every weight
    dequantized exactly, i.e. the quantized model's function without activation quantization).
For the chat case: the conversation rendered by Jinja2 from the model's own template (or, for the
Gemma 3 base file that carries none, Gemma 3's instruction template), and `llama-tokenize --ids`
of that text (specials parsed; --no-bos where the rendered text already begins with BOS).

Needs the llama.cpp tools (LLAMACPP_BIN, default /opt/llamacpp/build-native/bin), python3 with
jinja2 and gguf, and the models (scripts/fetch_models.sh). Every command run is stored next to
its output in the JSON.

    scripts/gen_llamacpp_model_cases.py > tests/models/testdata/llamacpp_cases.json
"""
import json
import os
import shlex
import struct
import subprocess
import sys
import tempfile

import gguf
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

BIN = os.environ.get("LLAMACPP_BIN", "/opt/llamacpp/build-native/bin")
CACHE = os.environ.get("KESTREL_MODEL_CACHE", os.path.expanduser("~/.cache/kestrel/models"))
N_PREDICT = 16

# Gemma 3's instruction-tuned template (google/gemma-3-270m-it tokenizer_config.json); the base
# 270M file carries no tokenizer.chat_template, so the tests pass it as an explicit template.
GEMMA3_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\\n'}}
{%- endif -%}
"""

MODELS = [
    {"file": "SmolLM2-135M-Instruct.Q4_1.gguf", "template": None,
     "prompts": ["The capital of France is", "def fibonacci(n):",
                 "Once upon a time, in a small village,"]},
    {"file": "gemma-3-270m-q4_k_m.gguf", "template": GEMMA3_TEMPLATE,
     "prompts": ["The capital of France is", "def fibonacci(n):",
                 "Once upon a time, in a small village,"]},
]

CHAT = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Italy? Answer in one word."},
]


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def show(cmd):
    return " ".join(shlex.quote(c) for c in cmd).replace(CACHE, "$KESTREL_MODEL_CACHE")


def greedy(model, prompt, tmp):
    session = os.path.join(tmp, "session.bin")
    if os.path.exists(session):
        os.remove(session)
    cmd = [f"{BIN}/llama-completion", "-m", model, "-p", prompt, "-n", str(N_PREDICT), "--temp", "0",
           "-t", "1", "-c", "256", "-no-cnv", "--no-warmup", "--prompt-cache", session, "--prompt-cache-all"]
    run(cmd)
    data = open(session, "rb").read()
    _, _, n = struct.unpack("<III", data[:12])
    return list(struct.unpack(f"<{n}i", data[12:12 + 4 * n])), cmd


def tokenize(model, text, no_bos):
    cmd = [f"{BIN}/llama-tokenize", "-m", model, "-p", text, "--ids", "--log-disable"]
    if no_bos:
        cmd.append("--no-bos")
    out = run(cmd).strip().splitlines()[-1]
    return json.loads(out), cmd


def model_strings(path):
    reader = gguf.GGUFReader(path)

    def field(key):
        f = reader.fields.get(key)
        return None if f is None else f.parts[f.data[0]]

    tokens = reader.fields["tokenizer.ggml.tokens"]
    token = lambda i: bytes(tokens.parts[tokens.data[i]]).decode()
    template = field("tokenizer.chat_template")
    return {"template": None if template is None else bytes(template).decode(),
            "bos": token(int(field("tokenizer.ggml.bos_token_id")[0])),
            "eos": token(int(field("tokenizer.ggml.eos_token_id")[0]))}


def render(template, strings):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])

    def raise_exception(message):
        raise ValueError(message)

    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(messages=CHAT, add_generation_prompt=True,
                                            bos_token=strings["bos"], eos_token=strings["eos"])


def main():
    version = subprocess.run([f"{BIN}/llama-completion", "--version"], capture_output=True, text=True)
    out = {"generated_by": "scripts/gen_llamacpp_model_cases.py",
           "llama_cpp": " ".join((version.stdout + version.stderr).split("\n")[0:1]).strip(),
           "n_predict": N_PREDICT, "models": []}
    with tempfile.TemporaryDirectory() as tmp:
        for m in MODELS:
            path = os.path.join(CACHE, m["file"])
            f32 = os.path.join(tmp, "f32.gguf")
            quantize = [f"{BIN}/llama-quantize", "--allow-requantize", path, f32, "F32"]
            run(quantize)
            entry = {"file": m["file"], "f32_copy_command": show(quantize).replace(tmp, "$TMP"), "cases": []}
            for prompt in m["prompts"]:
                q_ids, q_cmd = greedy(path, prompt, tmp)
                f_ids, f_cmd = greedy(f32, prompt, tmp)
                p_ids, p_cmd = tokenize(path, prompt, no_bos=False)
                assert q_ids[:len(p_ids)] == p_ids and f_ids[:len(p_ids)] == p_ids, prompt
                entry["cases"].append({
                    "prompt": prompt, "prompt_ids": p_ids,
                    "quantized_ids": q_ids[len(p_ids):], "f32_ids": f_ids[len(p_ids):],
                    "commands": {"prompt_ids": show(p_cmd),
                                 "quantized_ids": show(q_cmd).replace(tmp, "$TMP"),
                                 "f32_ids": show(f_cmd).replace(tmp, "$TMP")}})
            os.remove(f32)
            strings = model_strings(path)
            template = strings["template"] if m["template"] is None else m["template"]
            rendered = render(template, strings)
            starts_with_bos = rendered.startswith(strings["bos"])
            ids, cmd = tokenize(path, rendered, no_bos=starts_with_bos)
            entry["chat"] = {"template": m["template"], "messages": CHAT, "add_generation_prompt": True,
                             "rendered": rendered, "ids": ids,
                             "commands": {"rendered": "Jinja2 (trim_blocks, lstrip_blocks) of " +
                                          ("the file's tokenizer.chat_template" if m["template"] is None
                                           else "\"template\""),
                                          "ids": show(cmd)}}
            out["models"].append(entry)
    json.dump(out, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
