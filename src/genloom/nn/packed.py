"""Linear layers whose weights are laid out once for the CPU's matrix-multiply library, for decoding.

A decoding step multiplies a few rows by every weight matrix of the model, so on a CPU it is bound by how fast
the weights stream from memory, and the layout decides that speed. A single row reads the weight fastest
transposed, (in, out) row-major, each input's weight row scaled and added to the output, one contiguous stream:
genloom's own kernel (``onerow.c``, built at install where a C compiler is found; AVX2) does that at the speed of
reading the memory, on every thread, where ``addmm`` on one thread is a fifth slower and several threads went to
oneDNN. Several rows go to oneDNN's blocked layout (``torch.ops.mkldnn._reorder_linear_weight``), as
``torch.compile``'s CPU backend packs a frozen model. A laid-out copy is inference-only: it does not follow later
changes of the weight, so its owner rebuilds it when the parameters change (``GPT.decode_plan``). Measurements:
docs/compute.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor

try:
    from genloom.nn import _onerow as onerow
except ImportError:  # installed without a C compiler: torch's products only
    onerow = None
KERNEL = onerow is not None and onerow.fast  # the one-row kernel is built and this CPU has AVX2 and FMA


def packing(weight: Tensor, rows: int) -> str:
    """How ``PackedLinear`` lays out ``weight`` for inputs of ``rows`` rows: "kernel" (one row, genloom's kernel),
    "transposed" (one row on one thread without it), "onednn" (several rows or threads, a build with oneDNN), or
    "plain" (GPUs, other dtypes, other builds). Measured on the lm_speed model's 25 products at batch 1: the kernel
    at the speed of summing the weights, ``addmm`` on the transposed weight a fifth slower, MKL's packed GEMM and
    oneDNN slower still (docs/compute.md)."""
    if weight.device.type != "cpu" or weight.dtype != torch.float32:
        return "plain"
    if rows == 1 and KERNEL:
        return "kernel"
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
        self.threads = torch.get_num_threads()  # the kernel's; a plan is rebuilt when the count changes
        try:
            if self.kind in ("kernel", "transposed"):
                self.packed = self.weight.t().contiguous()  # (in, out)
            elif self.kind == "onednn":
                self.packed = torch.ops.mkldnn._reorder_linear_weight(self.weight, rows)
        except RuntimeError:  # a CPU or build the library refuses: the plain product
            self.kind = "plain"
        if self.kind != "plain":
            self.weight = None  # the laid-out copy is all a step reads

    def __call__(self, x: Tensor) -> Tensor:
        """x (N, in) → (N, out)."""
        if self.kind == "kernel" and x.size(0) == 1 and x.dtype == torch.float32:
            x = x.contiguous()
            size, out = self.packed.shape
            y = x.new_empty(1, out)
            onerow.gemv(y.data_ptr(), x.data_ptr(), self.packed.data_ptr(),
                        self.bias.data_ptr() if self.bias is not None else 0, out, size, self.threads)
            return y
        if self.kind in ("kernel", "transposed"):
            return torch.addmm(self.bias, x, self.packed) if self.bias is not None else x @ self.packed
        if self.kind == "onednn":
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)


@contextmanager
def torch_on_one_thread() -> Iterator[None]:
    """Torch's own operations on one thread inside the block, the thread count put back after it. A step that runs
    the kernel on several threads wraps its small operations so: a parallel region of torch's (SDPA's, say) leaves
    its OpenMP threads spinning on the very cores the kernel's workers need next, which made two-thread batch-1
    decoding 4× slower than one thread (28 against 106 tokens/s; with this, 131)."""
    threads = torch.get_num_threads()
    if threads > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if threads > 1:
            torch.set_num_threads(threads)
