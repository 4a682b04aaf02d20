"""GPT: a decoder-only Transformer language model (Radford et al. 2019), nanoGPT-style, from ``nn/transformer.py``.

Pre-LayerNorm blocks, causal attention through ``scaled_dot_product_attention``,
learned positions (GPT-2's layout), the input embedding tied to the output
layer, the embedding table padded to a multiple of 64 rows (faster matmuls; the
padded rows are never predicted), and a KV cache for incremental decoding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from genloom.config import require_at_least, require_fraction
from genloom.data.batching import Batch
from genloom.errors import UserError
from genloom.nn.losses import masked_cross_entropy
from genloom.nn.transformer import FeedForward, MultiHeadAttention, TransformerLayer, reorder_caches
from genloom.train.loop import LossOutput


@dataclass
class GPTConfig:
    """The GPT's shape. ``vocab_size`` comes from the tokenizer; ``context_length`` is the longest input."""

    vocab_size: int = 0
    context_length: int = 256
    dim: int = 384
    num_layers: int = 6
    num_heads: int = 6
    dropout: float = 0.0
    bias: bool = True
    tie_embeddings: bool = True
    pad_vocab_multiple: int = 64


class GPT(nn.Module):
    """A causal Transformer LM honouring the decoding step contract."""

    conditional = False

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = c = config
        self.padded_vocab = math.ceil(c.vocab_size / c.pad_vocab_multiple) * c.pad_vocab_multiple
        self.embed = nn.Embedding(self.padded_vocab, c.dim)
        self.positions = nn.Embedding(c.context_length, c.dim)
        self.drop = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(
            TransformerLayer(MultiHeadAttention(c.dim, c.num_heads, c.dropout, c.bias),
                             FeedForward(c.dim, 4 * c.dim, c.dropout, "gelu", c.bias), c.dim, c.dropout)
            for _ in range(c.num_layers)
        )
        self.norm = nn.LayerNorm(c.dim, bias=c.bias)
        self.output = nn.Linear(c.dim, self.padded_vocab, bias=False)
        self.apply(self._init)
        for name, param in self.named_parameters():  # GPT-2: scale residual projections by 1/sqrt(2 L)
            if name.endswith("out.weight") or name.endswith("down.weight"):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * c.num_layers))
        if c.tie_embeddings:
            self.output.weight = self.embed.weight

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, tokens: Tensor, caches: list | None = None, offset: int = 0) -> tuple[Tensor, list | None]:
        """tokens (B, T) at positions offset … offset+T-1 → logits (B, T, V) and the updated caches."""
        length = offset + tokens.size(1)
        if length > self.config.context_length:
            raise UserError(f"the input is {length} tokens long, longer than the model's context of "
                            f"{self.config.context_length} tokens.")
        positions = torch.arange(offset, length, device=tokens.device)
        x = self.drop(self.embed(tokens) + self.positions(positions))  # (B, T, C)
        new_caches = []
        for i, layer in enumerate(self.layers):
            x, cache, _ = layer(x, causal=True, cache=caches[i] if caches is not None else None)
            new_caches.append(cache)
        logits = self.output(self.norm(x))[..., : self.config.vocab_size]  # (B, T, V): padded rows dropped
        return logits, new_caches if caches is not None else None

    def loss(self, batch: Batch, carry: Any = None) -> LossOutput:
        """Mean next-token cross-entropy; windows are independent, so ``carry`` is unused."""
        logits, _ = self(batch.inputs)
        return LossOutput(loss=masked_cross_entropy(logits, batch.targets, batch.mask), n_tokens=batch.num_tokens)

    # The decoding step contract.

    def init_state(self, batch_size: int, context: Any = None) -> dict[str, Any]:
        return {"caches": [{} for _ in self.layers], "offset": 0}

    def step(self, tokens: Tensor, state: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        """(B, T) new tokens → (B, V) logits for the next one, reusing cached keys and values."""
        logits, caches = self(tokens, state["caches"], state["offset"])
        return logits[:, -1], {"caches": caches, "offset": state["offset"] + tokens.size(1)}

    def reorder_state(self, state: dict[str, Any], index: Tensor) -> dict[str, Any]:
        caches = reorder_caches(state["caches"], index)
        return {"caches": caches, "offset": state["offset"]}

    @property
    def max_context(self) -> int:
        return self.config.context_length


# Hugging Face GPT-2 layout, offline: config.json + model.safetensors (+ tokenizer.json). GPT-2 keeps its
# projections as Conv1D weights of shape (in, out), the transpose of nn.Linear's, and fuses q, k, v.

HF_LAYER = {  # our name in layer i → (HF name in transformer.h.i, transposed)
    "norm_self.weight": ("ln_1.weight", False), "norm_self.bias": ("ln_1.bias", False),
    "self_attention.out.weight": ("attn.c_proj.weight", True), "self_attention.out.bias": ("attn.c_proj.bias", False),
    "norm_ff.weight": ("ln_2.weight", False), "norm_ff.bias": ("ln_2.bias", False),
    "feed_forward.up.weight": ("mlp.c_fc.weight", True), "feed_forward.up.bias": ("mlp.c_fc.bias", False),
    "feed_forward.down.weight": ("mlp.c_proj.weight", True), "feed_forward.down.bias": ("mlp.c_proj.bias", False),
}


def config_from_hf(hf: dict[str, Any]) -> GPTConfig:
    """A ``GPTConfig`` from a Hugging Face GPT-2 ``config.json``; unsupported variants are refused."""
    if hf.get("model_type") != "gpt2":
        raise UserError(f"expected a Hugging Face GPT-2 config (model_type gpt2), got {hf.get('model_type')!r}.")
    missing = [key for key in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head") if key not in hf]
    if missing:
        raise UserError(f"the GPT-2 config.json lacks {', '.join(missing)}.")
    if hf.get("activation_function", "gelu_new") != "gelu_new" or hf.get("layer_norm_epsilon", 1e-5) != 1e-5:
        raise UserError("only GPT-2 checkpoints with gelu_new activations and LayerNorm epsilon 1e-5 can be loaded.")
    if hf.get("n_inner") not in (None, 4 * hf["n_embd"]):
        raise UserError("only GPT-2 checkpoints whose MLP is 4 × n_embd wide can be loaded.")
    return GPTConfig(vocab_size=hf["vocab_size"], context_length=hf["n_positions"], dim=hf["n_embd"],
                     num_layers=hf["n_layer"], num_heads=hf["n_head"], dropout=0.0, bias=True, tie_embeddings=True)


def state_from_hf(hf_tensors: dict[str, Tensor], config: GPTConfig) -> dict[str, Tensor]:
    """Map GPT-2 tensors (``transformer.…`` or bare names) to this module's state dict."""
    tensors = {k.removeprefix("transformer."): v for k, v in hf_tensors.items()}
    dim = config.dim
    padded = math.ceil(config.vocab_size / config.pad_vocab_multiple) * config.pad_vocab_multiple
    embed = torch.zeros(padded, dim, dtype=tensors["wte.weight"].dtype)
    embed[: config.vocab_size] = tensors["wte.weight"]
    state = {"embed.weight": embed, "positions.weight": tensors["wpe.weight"],
             "norm.weight": tensors["ln_f.weight"], "norm.bias": tensors["ln_f.bias"]}
    for i in range(config.num_layers):
        prefix = f"h.{i}."
        fused_w, fused_b = tensors[prefix + "attn.c_attn.weight"], tensors[prefix + "attn.c_attn.bias"]  # (C, 3C)
        state[f"layers.{i}.self_attention.query.weight"] = fused_w[:, :dim].t()
        state[f"layers.{i}.self_attention.query.bias"] = fused_b[:dim]
        state[f"layers.{i}.self_attention.key_value.weight"] = fused_w[:, dim:].t()
        state[f"layers.{i}.self_attention.key_value.bias"] = fused_b[dim:]
        for ours, (theirs, transposed) in HF_LAYER.items():
            tensor = tensors[prefix + theirs]
            state[f"layers.{i}.{ours}"] = tensor.t() if transposed else tensor
    state["output.weight"] = state["embed.weight"]
    return {k: v.contiguous() for k, v in state.items()}


def state_to_hf(model: GPT) -> dict[str, Tensor]:
    """This module's weights under GPT-2's names and shapes (the inverse of ``state_from_hf``)."""
    c, ours = model.config, model.state_dict()
    hf = {"transformer.wte.weight": ours["embed.weight"][: c.vocab_size], "transformer.wpe.weight": ours["positions.weight"],
          "transformer.ln_f.weight": ours["norm.weight"], "transformer.ln_f.bias": ours["norm.bias"]}
    for i in range(c.num_layers):
        prefix, layer = f"transformer.h.{i}.", f"layers.{i}."
        hf[prefix + "attn.c_attn.weight"] = torch.cat([ours[layer + "self_attention.query.weight"],
                                                       ours[layer + "self_attention.key_value.weight"]]).t()
        hf[prefix + "attn.c_attn.bias"] = torch.cat([ours[layer + "self_attention.query.bias"],
                                                     ours[layer + "self_attention.key_value.bias"]])
        for name, (theirs, transposed) in HF_LAYER.items():
            tensor = ours[layer + name]
            hf[prefix + theirs] = tensor.t() if transposed else tensor
    return {k: v.detach().contiguous() for k, v in hf.items()}


def config_to_hf(config: GPTConfig, bos_id: int, eos_id: int) -> dict[str, Any]:
    """A Hugging Face GPT-2 ``config.json`` for ``config`` (tied, no untied biases, gelu_new)."""
    if not (config.bias and config.tie_embeddings):
        raise UserError("only GPTs with biases and tied embeddings can be exported in the GPT-2 layout.")
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": config.vocab_size,
            "n_positions": config.context_length, "n_embd": config.dim, "n_layer": config.num_layers,
            "n_head": config.num_heads, "n_inner": None, "activation_function": "gelu_new",
            "layer_norm_epsilon": 1e-5, "resid_pdrop": config.dropout, "embd_pdrop": config.dropout,
            "attn_pdrop": config.dropout, "initializer_range": 0.02, "bos_token_id": bos_id,
            "eos_token_id": eos_id, "tie_word_embeddings": True}


def check_config(config: GPTConfig) -> None:
    require_at_least(config, ("context_length", "dim", "num_layers", "num_heads", "pad_vocab_multiple"))
    require_fraction(config, ("dropout",))
    if config.dim % config.num_heads:
        raise UserError(f"model.dim ({config.dim}) must be divisible by model.num_heads ({config.num_heads}).")


def build(config: GPTConfig) -> GPT:
    check_config(config)
    if config.vocab_size < 1:
        raise UserError("the GPT needs model.vocab_size ≥ 1; it is normally taken from the tokenizer.")
    return GPT(config)


CONFIG = GPTConfig
