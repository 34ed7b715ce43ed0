"""Chat templates of three families, written here so that tests and tiny models need no downloads.

Each constant is a Jinja chat template in the shape its family uses with tools:

- `CHATML_TOOL_TEMPLATE`: Qwen2.5-style ChatML. Tools are listed in the system turn, a tool call
  renders as `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>` (what vLLM's
  `hermes` parser reads), consecutive tool results share one `<|im_start|>user` turn, and
  `<|im_end|>` ends every turn.
- `CHATML_COMPACT_TOOL_TEMPLATE`: the same, with each tool in one line instead of its JSON schema
  (what `model_import.py` gives a ChatML model whose own template ignores tools, e.g. SmolLM2).
- `LLAMA3_TOOL_TEMPLATE`: Llama-3-style header template: `<|start_header_id|>role<|end_header_id|>`,
  `<|eot_id|>` ends every turn, tool results come from the `ipython` role, tool calls are JSON
  lines `{"name": ..., "parameters": {...}}`.
- `GLM_TOOL_TEMPLATE`: GLM-4.5-style template: role tokens `<|system|>`, `<|user|>`,
  `<|assistant|>`, `<|observation|>` with no end-of-turn token (the next role token ends an
  assistant turn), XML tool calls `<tool_call>name<arg_key>k</arg_key><arg_value>v</arg_value>`,
  and one `<|observation|>` before a run of consecutive tool results.

`FAMILIES` maps a family name to its template and its special tokens. These are faithful
re-creations of the families' structure, not byte copies of any vendor's file; a real model's
own template (loaded with its tokenizer) always takes precedence in training.
"""

from __future__ import annotations

import dataclasses

# The turns of a ChatML conversation with hermes tool calls, after the system turn: shared by both
# ChatML templates below, which differ only in how the system turn lists the tools.
_CHATML_TURNS = """\
{%- for message in messages %}
{%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}
{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
{%- elif message.role == 'assistant' %}
{{- '<|im_start|>assistant' }}
{%- if message.content %}{{- '\\n' + message.content }}{%- elif not message.tool_calls %}{{- '\\n' }}{%- endif %}
{%- for tool_call in message.tool_calls or [] %}
{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}
{{- '\\n<tool_call>\\n{\"name\": \"' + tool_call.name + '\", \"arguments\": ' }}
{%- if tool_call.arguments is string %}{{- tool_call.arguments }}{%- else %}{{- tool_call.arguments | tojson }}{%- endif %}
{{- '}\\n</tool_call>' }}
{%- endfor %}
{{- '<|im_end|>\\n' }}
{%- elif message.role == 'tool' %}
{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}
{{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}
{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}
"""

CHATML_TOOL_TEMPLATE = (
    """\
{%- if tools %}
{{- '<|im_start|>system\\n' }}
{%- if messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}
{{- '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}
{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}
{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\\n</tool_call><|im_end|>\\n' }}
{%- elif messages[0].role == 'system' %}
{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
{%- endif %}
"""
    + _CHATML_TURNS
)

# The same ChatML turns and hermes tool calls, with each tool listed as one line,
# `name(param: type, optional?: type): description`, instead of its whole JSON schema: about a
# quarter of the tokens for the sandbox's seven tools (what most of a short agent sample is).
# Parameter descriptions are left out; the arguments are still checked against the full schema
# when a call is made.
CHATML_COMPACT_TOOL_TEMPLATE = (
    """\
{%- if tools %}
{{- '<|im_start|>system\\n' }}
{%- if messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}
{{- 'You can call these tools:' }}
{%- for tool in tools %}
{%- set f = tool.function if tool.function is defined else tool %}
{%- set p = f.parameters if f.parameters is defined else {} %}
{%- set required = p.required if p.required is defined else [] %}
{{- '\\n- ' + f.name + '(' }}
{%- for name, spec in (p.properties.items() if p.properties is defined else []) %}
{{- (', ' if not loop.first else '') + name + ('' if name in required else '?') + ': ' + (spec.type if spec.type is defined else 'any') }}
{%- endfor %}
{{- ')' + (': ' + f.description if f.description is defined and f.description else '') }}
{%- endfor %}
{{- '\\n\\nTo call a tool, answer with:\\n<tool_call>\\n{\"name\": <tool name>, \"arguments\": <JSON object>}\\n</tool_call><|im_end|>\\n' }}
{%- elif messages[0].role == 'system' %}
{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
{%- endif %}
"""
    + _CHATML_TURNS
)

LLAMA3_TOOL_TEMPLATE = """\
{{- bos_token }}
{%- if messages[0].role == 'system' %}
{%- set system_message = messages[0].content %}
{%- set rest = messages[1:] %}
{%- else %}
{%- set system_message = '' %}
{%- set rest = messages %}
{%- endif %}
{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' + system_message }}
{%- if tools %}
{{- '\\n\\nYou have access to the following functions. To call one, respond with a JSON object {\"name\": function name, \"parameters\": arguments}, one per line.\\n' }}
{%- for tool in tools %}{{- '\\n' + (tool | tojson) }}{%- endfor %}
{%- endif %}
{{- '<|eot_id|>' }}
{%- for message in rest %}
{%- if message.role == 'assistant' %}
{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' + (message.content or '') }}
{%- for tool_call in message.tool_calls or [] %}
{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}
{%- if message.content or not loop.first %}{{- '\\n' }}{%- endif %}
{{- '{\"name\": \"' + tool_call.name + '\", \"parameters\": ' + (tool_call.arguments | tojson) + '}' }}
{%- endfor %}
{{- '<|eot_id|>' }}
{%- elif message.role == 'tool' %}
{{- '<|start_header_id|>ipython<|end_header_id|>\\n\\n' + message.content + '<|eot_id|>' }}
{%- else %}
{{- '<|start_header_id|>' + message.role + '<|end_header_id|>\\n\\n' + message.content + '<|eot_id|>' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}
"""

GLM_TOOL_TEMPLATE = """\
{{- '[gMASK]<sop>' }}
{%- if tools %}
{{- '<|system|>\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>\\n' }}
{%- for tool in tools %}{{- (tool | tojson) + '\\n' }}{%- endfor %}
{{- '</tools>\\n\\nFor each function call, output the function name and arguments within the following XML format:\\n<tool_call>{function-name}\\n<arg_key>{arg-key-1}</arg_key>\\n<arg_value>{arg-value-1}</arg_value>\\n...\\n</tool_call>' }}
{%- endif %}
{%- for message in messages %}
{%- if message.role == 'system' %}
{{- '<|system|>\\n' + message.content }}
{%- elif message.role == 'user' %}
{{- '<|user|>\\n' + message.content }}
{%- elif message.role == 'assistant' %}
{{- '<|assistant|>' }}
{%- if message.content %}{{- '\\n' + message.content }}{%- endif %}
{%- for tool_call in message.tool_calls or [] %}
{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}
{{- '\\n<tool_call>' + tool_call.name }}
{%- for key, value in tool_call.arguments.items() %}
{{- '\\n<arg_key>' + key + '</arg_key>\\n<arg_value>' }}
{%- if value is string %}{{- value }}{%- else %}{{- value | tojson }}{%- endif %}
{{- '</arg_value>' }}
{%- endfor %}
{{- '\\n</tool_call>' }}
{%- endfor %}
{%- elif message.role == 'tool' %}
{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|observation|>' }}{%- endif %}
{{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|assistant|>' }}{%- endif %}
"""


@dataclasses.dataclass(frozen=True)
class TemplateFamily:
    """A chat template and the special tokens its tokenizer needs.

    Attributes:
        name: "chatml", "chatml-compact", "llama3" or "glm".
        template: The Jinja chat template.
        special_tokens: Tokens that only the template may produce (role markers, turn ends).
        extra_tokens: Tokens kept whole but allowed in text (tool-call tags).
        bos_token, eos_token, pad_token: The tokenizer's named special tokens.
        stop_tokens: Tokens that end a generation (the model's `eos_token_id` list).
    """

    name: str
    template: str
    special_tokens: tuple[str, ...]
    extra_tokens: tuple[str, ...]
    bos_token: str | None
    eos_token: str
    pad_token: str
    stop_tokens: tuple[str, ...]


FAMILIES: dict[str, TemplateFamily] = {
    "chatml": TemplateFamily(
        name="chatml",
        template=CHATML_TOOL_TEMPLATE,
        special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        extra_tokens=("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"),
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        stop_tokens=("<|im_end|>", "<|endoftext|>"),
    ),
    "chatml-compact": TemplateFamily(
        name="chatml-compact",
        template=CHATML_COMPACT_TOOL_TEMPLATE,
        special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        extra_tokens=("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"),
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        stop_tokens=("<|im_end|>", "<|endoftext|>"),
    ),
    "llama3": TemplateFamily(
        name="llama3",
        template=LLAMA3_TOOL_TEMPLATE,
        special_tokens=(
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
            "<|finetune_right_pad_id|>",
        ),
        extra_tokens=(),
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|finetune_right_pad_id|>",
        stop_tokens=("<|eot_id|>", "<|end_of_text|>"),
    ),
    "glm": TemplateFamily(
        name="glm",
        template=GLM_TOOL_TEMPLATE,
        special_tokens=(
            "<|endoftext|>",
            "[gMASK]",
            "<sop>",
            "<|system|>",
            "<|user|>",
            "<|assistant|>",
            "<|observation|>",
        ),
        extra_tokens=(
            "<tool_call>",
            "</tool_call>",
            "<arg_key>",
            "</arg_key>",
            "<arg_value>",
            "</arg_value>",
            "<tool_response>",
            "</tool_response>",
        ),
        bos_token=None,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        stop_tokens=("<|endoftext|>", "<|user|>", "<|observation|>"),
    ),
}
