# Renders like transformers' apply_chat_template: ImmutableSandboxedEnvironment, trim_blocks,
# lstrip_blocks, and transformers' own tojson (json.dumps, ensure_ascii=False, no key sorting).
import json, sys
from jinja2.sandbox import ImmutableSandboxedEnvironment
env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
env.filters["tojson"] = lambda x, indent=None, separators=None, sort_keys=False: json.dumps(x, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys)
t = env.from_string(open(sys.argv[1]).read())
d = json.load(open(sys.argv[2]))
out = t.render(messages=d["messages"], tools=d.get("tools"), add_generation_prompt=True, bos_token="", eos_token="<|im_end|>")
sys.stdout.write(json.dumps(out, ensure_ascii=False))
