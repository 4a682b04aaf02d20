"""Linear layers whose weights are laid out once for the CPU's matrix-multiply library, for decoding.

A decoding step multiplies a few rows by every weight matrix of the model, so on a CPU it is bound by how fast
the weights stream from memory. The GEMM libraries read a weight they have reordered into their own layout faster
than the plain row-major matrix: MKL's packed GEMM for a single row on one thread
(``torch.ops.mkl._mkl_reorder_linear_weight``) and oneDNN's blocked layout otherwise
(``torch.ops.mkldnn._reorder_linear_weight``), as ``torch.compile``'s CPU backend packs a frozen model. On the
``benchmarks/lm_speed.py`` model the linear layers of a step take 1.2-1.4x less time (docs/compute.md). A packed
copy is inference-only: it does not follow later changes of the weight, so its owner rebuilds it when the parameters
change (``GPT.decode_plan``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def packing(weight: Tensor, rows: int) -> str:
    """How ``PackedLinear`` lays out ``weight`` for inputs of ``rows`` rows: "mkl" (one row on one thread, a build
    with MKL), "onednn" (several rows or threads, a build with oneDNN), or "plain" (GPUs, other dtypes, other
    builds). Measured on the lm_speed model at batch 1: MKL 69 vs oneDNN 55 tokens/s on one thread, 75 vs 82 on
    two (docs/compute.md)."""
    if weight.device.type != "cpu" or weight.dtype != torch.float32:
        return "plain"
    if (rows == 1 and torch.get_num_threads() == 1 and torch.backends.mkl.is_available()
            and hasattr(torch.ops.mkl, "_mkl_reorder_linear_weight")):
        return "mkl"
    if torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"):
        return "onednn"
    return "plain"


class PackedLinear:
    """``F.linear(x, weight, bias)`` with ``weight`` (out, in) laid out for inputs of ``rows`` rows (``packing``).
    Any number of rows works: an MKL layout for one row serves other inputs with the plain weight."""

    def __init__(self, weight: Tensor, bias: Tensor | None, rows: int = 1):
        self.weight, self.bias = weight.detach(), bias.detach() if bias is not None else None
        self.kind, self.rows, self.packed = packing(self.weight, rows), rows, None
        try:
            if self.kind == "mkl":
                self.packed = torch.ops.mkl._mkl_reorder_linear_weight(self.weight, rows)
            elif self.kind == "onednn":
                self.packed = torch.ops.mkldnn._reorder_linear_weight(self.weight, rows)
        except RuntimeError:  # a CPU or build the library refuses: the plain product
            self.kind = "plain"

    def __call__(self, x: Tensor) -> Tensor:
        """x (N, in) → (N, out)."""
        if self.kind == "mkl":
            return torch.ops.mkl._mkl_linear(x, self.packed, self.weight, self.bias, self.rows)
        if self.kind == "onednn":
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)
