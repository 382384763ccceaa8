#!/usr/bin/env python3
"""Regenerates runtime/tokenizer/chat/testdata/chat_template_cases.json: the expected prompts of
the chat-template tests, rendered by Jinja2 itself in Hugging Face's environment (trim_blocks,
lstrip_blocks, loopcontrols, its tojson and raise_exception), i.e. what transformers'
apply_chat_template produces. Needs `pip install jinja2`; the tests themselves do not.

    scripts/gen_chat_template_cases.py [extra.jinja ...] > runtime/tokenizer/chat/testdata/chat_template_cases.json

The templates are short ones written for the tests in each family's format (ChatML with
SmolLM2's default system prompt, Llama 3, Gemma, Mistral [INST], Phi-3, plus edge cases of the
subset); extra .jinja files given on the command line are added as cases too, for checking real
templates locally without committing them:

    scripts/gen_chat_template_cases.py /opt/llamacpp/src/models/templates/*.jinja > /tmp/cases.json
    KESTREL_CHAT_TEMPLATE_CASES=/tmp/cases.json build/tests/chat_template_test
"""
import datetime
import json
import sys

from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


def raise_exception(message):
    raise ValueError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


ENV = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
ENV.filters["tojson"] = tojson
ENV.globals["raise_exception"] = raise_exception
# A fixed clock, so the expectations are stable; the tests render with the same `now`.
NOW = datetime.datetime(2024, 7, 26, tzinfo=datetime.timezone.utc)
ENV.globals["strftime_now"] = lambda fmt: NOW.strftime(fmt)

TEMPLATES = {
    "chatml_smollm2": (
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
        "{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"),
    "llama3": """{{- bos_token }}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{{- system_message + "<|eot_id|>" }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
""",
    "gemma": (
        "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
        "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
        "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
        "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"),
    "mistral": """{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_message is defined %}
            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}
        {%- else %}
            {{- ' [INST] ' + message['content'] + ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token}}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported!') }}
    {%- endif %}
{%- endfor %}
""",
    "phi3": (
        "{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}"
        "{{'<|system|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'user' %}"
        "{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'assistant' %}"
        "{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}"),
    # Edge cases of the subset: namespaces, filters, tests, slices, loop variables, whitespace control.
    "subset_edges": """{%- set ns = namespace(count=0, roles=[]) %}
{% for m in messages if m.role != 'system' %}
  {% set ns.count = ns.count + 1 %}
  [{{ loop.index }}/{{ loop.length }}{{ ' first' if loop.first }}{{ ' last' if loop.last else '' }}] {{ m.role | upper }}: {{ m['content'] | trim | length }}
{% endfor %}
{{ ns.count }} {{ messages | selectattr('role', 'equalto', 'user') | list | length }} {{ (messages | map(attribute='role') | list)[1:3] | join(',') }}
{{ messages[-1].content ~ '|' ~ (messages | last).role }} {{ 7 // 2 }} {{ 7 % 3 }} {{ 2 * 3 + 1 }} {{ 'x' in 'xyz' }} {{ 'q' not in ['a'] }}
{{ {'a': 1, 'b': [true, none, 'c']} | tojson }} {{ undefined_thing is defined }} {{ none is none }} {{ messages[0].role.startswith('sys') }}
{{- '  tight  ' -}}
{# a comment #}
{{ "a,b".split(",") }} {{ '  pad '.strip() }}{% if add_generation_prompt %}<gen>{% endif %}
{% macro tag(name, value='-', upper=false) %}<{{ name | upper if upper else name }}={{ value }}>{% endmacro %}
{{ tag('a') }}{{ tag('b', 2) }}{{ tag('c', upper=true) }}
{% set block %}{% for m in messages[::-1] %}{{ m.role[:1] }}{% endfor %}{% endset %}[{{ block }}] {{ messages[1:][::2] | map(attribute='role') | join('|') }}
{% for m in messages %}{% if m.role == 'assistant' %}{% continue %}{% endif %}{% if loop.index > 3 %}{% break %}{% endif %}{{ loop.index }}{% endfor %}
""",
}

CONVERSATIONS = {
    "with_system": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": " Hello! "},
        {"role": "user", "content": "2+2?"},
    ],
    "user_first": [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": " Hello! "},
        {"role": "user", "content": "2+2?"},
    ],
}


def main():
    templates = dict(TEMPLATES)
    for path in sys.argv[1:]:
        with open(path, encoding="utf-8") as f:
            templates[path] = f.read()
    cases = []
    for name, source in templates.items():
        for conv_name, messages in CONVERSATIONS.items():
            for add_generation_prompt in (True, False):
                case = {"template": name, "conversation": conv_name, "add_generation_prompt": add_generation_prompt}
                try:
                    case["expected"] = ENV.from_string(source).render(
                        messages=messages, add_generation_prompt=add_generation_prompt, bos_token="<s>",
                        eos_token="</s>")
                except ValueError as e:  # raise_exception
                    case["error"] = str(e)
                except Exception as e:  # Jinja2 itself cannot render it (e.g. needs `tools`): no case
                    sys.stderr.write("skipped %s / %s: %s: %s\n" % (name, conv_name, type(e).__name__, e))
                    continue
                cases.append(case)
    json.dump({"generator": "scripts/gen_chat_template_cases.py (Jinja2 %s)" % __import__("jinja2").__version__,
               "bos_token": "<s>", "eos_token": "</s>", "now": int(NOW.timestamp()), "templates": templates, "conversations": CONVERSATIONS,
               "cases": cases}, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
