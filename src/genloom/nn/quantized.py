"""``Int8Linear``: a linear layer with int8 weights (one float32 scale per output row, symmetric) and float32
activations quantized on the fly: dynamic int8, what CTranslate2's ``int8`` and ``torch.ao``'s dynamic quantization
compute.

The weights are stored as plain tensors (``weight_int8`` int8 (out, in), ``scale`` float32 (out,)), the layout of
torchao's ``Int8Tensor``, so a checkpoint does not depend on the kernel that runs it. On a CPU the kernel is
fbgemm's dynamic int8 GEMM (``torch.ops.quantized.linear_dynamic``), 2.7-5x faster than the float32 product on the
``benchmarks/lm_speed.py`` model. torchao 0.18's int8 configurations were measured first and run slower than
float32 on the same AVX2 CPU (weight-only 0.6x, dynamic 0.1-0.25x; docs/compute.md), hence this module. Elsewhere
(a GPU, a build without fbgemm) the weight is dequantized for each product: same numbers, float speed.
"""

from __future__ import annotations

import functools
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def quantize_weight(weight: Tensor) -> tuple[Tensor, Tensor]:
    """(out, in) float weight → int8 weight and (out,) float32 scales: each row scaled so its largest magnitude
    is 127, rounded to nearest (a zero row keeps scale 1)."""
    weight = weight.detach().float()
    scale = weight.abs().amax(dim=1) / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


@functools.cache
def fbgemm_available() -> bool:
    return "fbgemm" in torch.backends.quantized.supported_engines and hasattr(torch.ops.quantized, "linear_dynamic")


class Int8Linear(nn.Module):
    """Replaces an ``nn.Linear``: ``weight_int8`` and ``scale`` are buffers, ``bias`` a float32 parameter. Built
    empty (``in_features``, ``out_features``) for loading, or from a float layer with ``from_linear``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scale", torch.ones(out_features))
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None
        self._packed: tuple | None = None  # (what it was packed from, fbgemm's packed weight)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "Int8Linear":
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None)
        weight_int8, scale = quantize_weight(linear.weight)
        layer.weight_int8.copy_(weight_int8)
        layer.scale.copy_(scale)
        if linear.bias is not None:
            layer.bias.data.copy_(linear.bias.detach())
        return layer.to(linear.weight.device)

    def dequantized(self) -> Tensor:
        """(out, in) float32: the weight the int8 values stand for."""
        return self.weight_int8.float() * self.scale[:, None]

    def forward(self, x: Tensor) -> Tensor:
        """x (..., in) → (..., out)."""
        if x.device.type == "cpu" and x.dtype == torch.float32 and fbgemm_available():
            flat = x.reshape(-1, self.in_features)
            # reduce_range: 7-bit activations, as torch.ao's dynamic quantization uses on x86; with 8 bits, AVX2's
            # pairwise int16 sums of uint8 × int8 products saturate (a 18 % error on a random layer, 1.5 % without)
            y = torch.ops.quantized.linear_dynamic(flat.contiguous(), self._fbgemm_weight(), True)
            return y.view(*x.shape[:-1], self.out_features)
        return F.linear(x, self.dequantized().to(x.dtype), self.bias.to(x.dtype) if self.bias is not None else None)

    def _fbgemm_weight(self):
        """fbgemm's packed weight, made on first use and again when the buffers change (a load, a move)."""
        source = self.weight_int8.data_ptr(), self.weight_int8._version  # a load writes the scales and bias with it
        if self._packed is None or self._packed[0] != source:
            with warnings.catch_warnings():  # the qint8 tensor type is deprecated; fbgemm's packing still takes it
                warnings.simplefilter("ignore", UserWarning)
                weight = torch._make_per_channel_quantized_tensor(
                    self.weight_int8, self.scale.double(), torch.zeros(self.out_features, dtype=torch.long), 0)
                bias = self.bias.detach() if self.bias is not None else None
                packed = torch.ops.quantized.linear_prepack(weight, bias)
            self._packed = (source, packed)
        return self._packed[1]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, int8"


def cat_int8(layers: list[Int8Linear]) -> Int8Linear:
    """One ``Int8Linear`` computing the given layers' outputs side by side (their rows stacked; per-row scales make
    this exact), as ``LayerPlan`` fuses the query, key and value projections."""
    fused = Int8Linear(layers[0].in_features, sum(layer.out_features for layer in layers),
                       bias=layers[0].bias is not None)
    fused.weight_int8 = torch.cat([layer.weight_int8 for layer in layers])
    fused.scale = torch.cat([layer.scale for layer in layers])
    if fused.bias is not None:
        fused.bias = nn.Parameter(torch.cat([layer.bias.detach() for layer in layers]), requires_grad=False)
    return fused


def quantize_linears(model: nn.Module, names: list[str] | None = None, empty: bool = False) -> list[str]:
    """Swap ``model``'s ``nn.Linear`` layers (those named in ``names``, or all) for ``Int8Linear`` in place; returns
    the names swapped. Layers sharing a weight (an output layer tied to an embedding) get their own int8 copy, and
    the embedding stays float32. ``empty``: layers of the same shapes, not yet holding weights (for a checkpoint's
    weights to load into), so that the float weights are not quantized for nothing."""
    swapped = []
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and (names is None or name in names):
            parent, _, child = name.rpartition(".")
            layer = (Int8Linear(module.in_features, module.out_features, module.bias is not None)
                     .to(module.weight.device) if empty else Int8Linear.from_linear(module))
            setattr(model.get_submodule(parent) if parent else model, child, layer)
            swapped.append(name)
    return swapped
