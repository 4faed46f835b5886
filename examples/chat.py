"""Ask the lab's gateway with OpenAI's own Python client: one answer, then the same streamed.

    pip install openai
    LABCTL_GATEWAY=http://orpheus.home.arpa:4000/v1 LABCTL_KEY=sk-... python examples/chat.py

The key is the gateway's master key (`labctl init` put it in the vault:
`ansible-vault view inventory/vault.yml`) or a key made for you. The model is any name of
group_vars/all/models.yml; the gateway picks a machine that serves it.
"""

from __future__ import annotations

import os

from openai import OpenAI

client = OpenAI(
    base_url=os.environ.get("LABCTL_GATEWAY", "http://orpheus.home.arpa:4000/v1"),
    api_key=os.environ["LABCTL_KEY"],
)
model = os.environ.get("LABCTL_MODEL", "llama3.1:8b")

answer = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "Say hello to the lab."}], max_tokens=64
)
print(answer.choices[0].message.content)

stream = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Count to five."}],
    max_tokens=64,
    stream=True,
)
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        print(chunk.choices[0].delta.content, end="", flush=True)
print()

vectors = client.embeddings.create(model="nomic-embed-text", input=["the lab has ten machines"])
print(f"embedding of {len(vectors.data[0].embedding)} dimensions")
