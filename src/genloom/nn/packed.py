"""Linear layers whose weights are laid out once for the CPU's matrix-multiply library, for decoding.

A decoding step multiplies a few rows by every weight matrix of the model, so on a CPU it is bound by how fast
the weights stream from memory, and the layout decides that speed. A single row on one thread reads the weight
fastest transposed, (in, out) row-major: ``addmm`` then adds each input's weight row, scaled, to the output, one
contiguous stream. Several rows, or several threads, go to oneDNN's blocked layout
(``torch.ops.mkldnn._reorder_linear_weight``), as ``torch.compile``'s CPU backend packs a frozen model. A laid-out
copy is inference-only: it does not follow later changes of the weight, so its owner rebuilds it when the parameters
change (``GPT.decode_plan``). Measurements: docs/compute.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def packing(weight: Tensor, rows: int) -> str:
    """How ``PackedLinear`` lays out ``weight`` for inputs of ``rows`` rows: "transposed" (one row on one thread),
    "onednn" (several rows or threads, a build with oneDNN), or "plain" (GPUs, other dtypes, other builds).
    Measured on the lm_speed model at batch 1, one thread: transposed 99-110 tokens/s, MKL's packed GEMM 90-96
    (oneDNN trailed MKL there, 55 vs 69); on two threads transposed and oneDNN are even within the noise
    (docs/compute.md)."""
    if weight.device.type != "cpu" or weight.dtype != torch.float32:
        return "plain"
    if rows == 1 and torch.get_num_threads() == 1:
        return "transposed"
    if torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"):
        return "onednn"
    return "plain"


class PackedLinear:
    """``F.linear(x, weight, bias)`` with ``weight`` (out, in) laid out for inputs of ``rows`` rows (``packing``).
    Any number of rows works with any layout; ``rows`` only chooses the fastest."""

    def __init__(self, weight: Tensor, bias: Tensor | None, rows: int = 1):
        self.weight, self.bias = weight.detach(), bias.detach() if bias is not None else None
        self.kind, self.packed = packing(self.weight, rows), None
        try:
            if self.kind == "transposed":
                self.packed = self.weight.t().contiguous()  # (in, out)
            elif self.kind == "onednn":
                self.packed = torch.ops.mkldnn._reorder_linear_weight(self.weight, rows)
        except RuntimeError:  # a CPU or build the library refuses: the plain product
            self.kind = "plain"
        if self.kind != "plain":
            self.weight = None  # the laid-out copy is all a step reads

    def __call__(self, x: Tensor) -> Tensor:
        """x (N, in) → (N, out)."""
        if self.kind == "transposed":
            return torch.addmm(self.bias, x, self.packed) if self.bias is not None else x @ self.packed
        if self.kind == "onednn":
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)
