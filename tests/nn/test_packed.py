"""Packed linear layers and the one-row kernel: the product of ``F.linear`` in every layout, on any thread count."""

import multiprocessing
import os

import pytest
import torch
import torch.nn.functional as F

from genloom.nn import packed
from genloom.nn.packed import PackedLinear

# CI installs a C compiler, so there the kernel must have been built (.ci/run); elsewhere its tests skip.
needs_kernel = pytest.mark.skipif(not packed.KERNEL and not os.environ.get("GENLOOM_REQUIRE_KERNEL"),
                                  reason="genloom.nn._gemv was not built (no C compiler at install) or the CPU "
                                         "lacks AVX2/FMA")


def product(x, weight_t, bias, threads):
    """x (1, k) · weight_t (k, n) + bias through the kernel."""
    y = torch.empty(1, weight_t.size(1))
    packed._gemv.gemv(y.data_ptr(), x.data_ptr(), weight_t.data_ptr(), bias.data_ptr() if bias is not None else 0,
                      weight_t.size(1), weight_t.size(0), threads)
    return y


@needs_kernel
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("out_features, in_features", [(384, 384), (77, 13), (8, 1), (1536, 384), (5, 6)])
def test_the_kernel_computes_the_product_of_f_linear(out_features, in_features, threads):
    """Odd widths exercise the tails (columns not a multiple of 8, inputs not a multiple of 4); more threads than
    8-column parts leave some workers out."""
    assert packed.KERNEL, "GENLOOM_REQUIRE_KERNEL is set but the kernel is not built"
    generator = torch.Generator().manual_seed(out_features + in_features)
    weight = torch.randn(out_features, in_features, generator=generator)
    bias = torch.randn(out_features, generator=generator)
    x = torch.randn(1, in_features, generator=generator)
    weight_t = weight.t().contiguous()
    torch.testing.assert_close(product(x, weight_t, bias, threads), F.linear(x, weight, bias), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(product(x, weight_t, None, threads), F.linear(x, weight), rtol=1e-4, atol=1e-4)


def _product_in_a_child(queue):
    torch.manual_seed(1)
    weight_t, x = torch.randn(64, 256), torch.randn(1, 64)
    queue.put((product(x, weight_t, None, 2) - x @ weight_t).abs().max().item())


@needs_kernel
def test_a_forked_child_starts_its_own_workers():
    """A fork copies only the calling thread: the child must not wait on workers it does not have."""
    product(torch.randn(1, 64), torch.randn(64, 256), None, 2)  # the parent's workers exist
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_product_in_a_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0 and queue.get(timeout=1) < 1e-4


@pytest.mark.parametrize("rows", [1, 3])
def test_every_layout_computes_f_linear(rows, monkeypatch):
    generator = torch.Generator().manual_seed(rows)
    weight, bias = torch.randn(96, 40, generator=generator), torch.randn(96, generator=generator)
    x = torch.randn(rows, 40, generator=generator)
    kinds, built = set(), packed.KERNEL
    for kernel in (built, False):
        monkeypatch.setattr(packed, "KERNEL", kernel)
        for threads in (1, 2):
            monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
            for layout_rows in (1, 4):
                layer = PackedLinear(weight, bias, layout_rows)
                kinds.add(layer.kind)
                torch.testing.assert_close(layer(x), F.linear(x, weight, bias), rtol=1e-4, atol=1e-4)
    assert "transposed" in kinds and ("kernel" in kinds) == built
    assert ("onednn" in kinds) == torch.backends.mkldnn.is_available()


def test_other_devices_and_dtypes_keep_the_plain_product():
    assert packed.packing(torch.zeros(4, 4, dtype=torch.float64), 1) == "plain"
