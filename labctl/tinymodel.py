"""A tiny, real GGUF model for the simulated lab: llama.cpp loads it and answers with it.

No model can be downloaded here, and the simulated machines have no GPU, so their inference
engine (llama.cpp's server, a real one) serves this file in place of every model the plan puts on
them: a Llama-architecture network a few layers deep and 64 wide, with random weights, a
byte-level tokenizer (every byte is a token, so any text encodes) and a chat template. Its output
is noise; the engine, its API and the gateway's routing to it are the real ones. Written with the
`gguf` package (llama.cpp's own writer); the same seed gives the same bytes.

    python -m labctl.tinymodel PATH
"""

from __future__ import annotations

import sys
from pathlib import Path

import gguf
import numpy as np

EMBED = 64
LAYERS = 2
HEADS = 4
KV_HEADS = 2
FEED_FORWARD = 128
CONTEXT = 2048
# A ChatML-style template in the Jinja subset llama.cpp's server understands.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _vocabulary() -> tuple[list[bytes], list[float], list[int]]:
    """SentencePiece-style vocabulary with byte fallback: <unk>, <s>, </s>, then one token per byte."""
    tokens = [b"<unk>", b"<s>", b"</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>".encode() for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    # A few whole words, so the tokenizer has merges to prefer over bytes (no duplicates).
    for word in ("\u2581the", "\u2581a", "\u2581is", "\u2581lab", "\u2581model", "\u2581hello"):
        tokens.append(word.encode())
        types.append(gguf.TokenType.NORMAL)
    scores = [0.0] * 3 + [-1000.0] * 256 + [-float(i) for i in range(len(tokens) - 259)]
    return tokens, scores, [int(t) for t in types]


def write(path: Path, *, name: str = "labctl-tiny", seed: int = 0) -> Path:
    """Write the model to `path` (its directory must exist); return the path."""
    rng = np.random.default_rng(seed)
    tokens, scores, types = _vocabulary()
    head_dim = EMBED // HEADS

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(EMBED)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FEED_FORWARD)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(len(tokens))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_chat_template(CHAT_TEMPLATE)

    def weights(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    # numpy shapes are ggml's reversed: token_embd is {EMBED, vocab} in ggml terms.
    writer.add_tensor("token_embd.weight", weights(len(tokens), EMBED))
    for layer in range(LAYERS):
        prefix = f"blk.{layer}"
        writer.add_tensor(f"{prefix}.attn_norm.weight", np.ones(EMBED, dtype=np.float32))
        writer.add_tensor(f"{prefix}.attn_q.weight", weights(HEADS * head_dim, EMBED))
        writer.add_tensor(f"{prefix}.attn_k.weight", weights(KV_HEADS * head_dim, EMBED))
        writer.add_tensor(f"{prefix}.attn_v.weight", weights(KV_HEADS * head_dim, EMBED))
        writer.add_tensor(f"{prefix}.attn_output.weight", weights(EMBED, HEADS * head_dim))
        writer.add_tensor(f"{prefix}.ffn_norm.weight", np.ones(EMBED, dtype=np.float32))
        writer.add_tensor(f"{prefix}.ffn_gate.weight", weights(FEED_FORWARD, EMBED))
        writer.add_tensor(f"{prefix}.ffn_up.weight", weights(FEED_FORWARD, EMBED))
        writer.add_tensor(f"{prefix}.ffn_down.weight", weights(EMBED, FEED_FORWARD))
    writer.add_tensor("output_norm.weight", np.ones(EMBED, dtype=np.float32))
    writer.add_tensor("output.weight", weights(len(tokens), EMBED))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


if __name__ == "__main__":  # pragma: no cover - used by the sim_lab role
    if len(sys.argv) != 2:
        sys.exit("usage: python -m labctl.tinymodel PATH")
    print(write(Path(sys.argv[1])))
