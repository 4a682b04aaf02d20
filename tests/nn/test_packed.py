"""Packed linear layers and the one-row kernels: the product of ``F.linear`` in every layout, on any thread count;
a block in C as the module computes it."""

import multiprocessing
import os

import pytest
import torch
import torch.nn.functional as F

from genloom.nn import packed, transformer
from genloom.nn.packed import PackedLinear
from genloom.nn.transformer import FeedForward, LayerPlan, MultiHeadAttention, TransformerLayer

# CI installs a C compiler, so there the kernel must have been built (.ci/run); elsewhere its tests skip.
needs_kernel = pytest.mark.skipif(not packed.KERNEL and not os.environ.get("GENLOOM_REQUIRE_KERNEL"),
                                  reason="genloom.nn._onerow was not built (no C compiler at install) or the CPU "
                                         "lacks AVX2/FMA")


def product(x, weight_t, bias, threads):
    """x (1, k) · weight_t (k, n) + bias through the kernel."""
    y = torch.empty(1, weight_t.size(1))
    packed.onerow.gemv(y.data_ptr(), x.data_ptr(), weight_t.data_ptr(), bias.data_ptr() if bias is not None else 0,
                      weight_t.size(1), weight_t.size(0), threads)
    return y


@needs_kernel
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("out_features, in_features", [(384, 384), (77, 13), (8, 1), (1536, 384), (5, 6), (40, 390)])
def test_the_kernel_computes_the_product_of_f_linear(out_features, in_features, threads):
    """Odd widths exercise the tails (columns not a multiple of 8, inputs not a multiple of 4 or of the parts);
    an input under 128 wide stays on one thread (64 input rows a part at least)."""
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


@needs_kernel
@pytest.mark.parametrize("activation, bias, heads, threads", [("gelu", True, 2, 1), ("gelu_exact", False, 3, 2),
                                                             ("relu", True, 1, 3)])
def test_a_native_block_steps_as_the_module_does(activation, bias, heads, threads, monkeypatch):
    """``onerow.layer`` (the block in C) against ``TransformerLayer.forward`` over the same cache: outputs and the
    cached keys and values, through a buffer regrowth (32 → 64 slots) and a trimmed, strided cache view; widths
    that are not multiples of 8 (C = 3·12 = 36, hidden 4·36 = 144) take the scalar tails."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)  # the plan shares its products this way
    torch.manual_seed(heads)
    dim = 12 * heads
    layer = TransformerLayer(MultiHeadAttention(dim, heads, bias=bias), FeedForward(dim, 4 * dim, activation=activation,
                                                                                  bias=bias), dim).eval()
    plan = LayerPlan(layer, rows=1)
    assert plan.native is not None
    inputs = torch.randn(1, 40, dim)
    with torch.no_grad():
        _, reference, _ = layer(inputs[:, :3], cache={})  # the prompt's keys and values
        cache, outputs = reference["self"], []
        for position in range(3, 40):
            x, cache = plan(inputs[:, position], cache)
            outputs.append(x)
        full, _, _ = layer(inputs, causal=True)
        torch.testing.assert_close(torch.stack(outputs, 1), full[:, 3:], rtol=1e-4, atol=1e-4)
        keys, values = cache["k"][:, :, :40], cache["v"][:, :, :40]
        _, whole, _ = layer(inputs, cache={})
        torch.testing.assert_close(keys, whole["self"]["k"][:, :, :40], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(values, whole["self"]["v"][:, :, :40], rtol=1e-4, atol=1e-4)
        trimmed = {"k": cache["k"][:, :, 5:], "v": cache["v"][:, :, 5:], "used": 35}  # as trim_caches leaves it
        x, after = plan(inputs[:, 39], trimmed)
        assert after["k"].data_ptr() == trimmed["k"].data_ptr()  # written in place, in the strided view
        keys = torch.cat([trimmed["k"][:, :, :35], after["k"][:, :, 35:36]], 2)
        attention = layer.self_attention
        q = attention.query(layer.norm_self(inputs[:, 39:40])).view(1, 1, heads, 12).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, keys, after["v"][:, :, :36]).transpose(1, 2).reshape(1, dim)
        h = inputs[:, 39] + attention.out(y)
        torch.testing.assert_close(x, h + layer.feed_forward(layer.norm_ff(h)), rtol=1e-4, atol=1e-4)


@needs_kernel
def test_several_rows_attend_through_the_kernel_as_through_sdpa(monkeypatch):
    """``onerow.attention`` (rows > 1: the products stay torch's) against SDPA and ``_append``, on a cache trimmed
    to a strided view as ``trim_caches`` leaves it: same outputs, same keys and values written."""
    torch.manual_seed(0)
    layer = TransformerLayer(MultiHeadAttention(36, 3), FeedForward(36, 144), 36).eval()
    plan = LayerPlan(layer, rows=4)
    keys, values = torch.randn(4, 3, 32, 12), torch.randn(4, 3, 32, 12)
    x = torch.randn(4, 36)
    results = []
    for kernel in (True, False):
        monkeypatch.setattr(transformer, "KERNEL", kernel)
        cache = {"k": keys.clone()[:, :, 2:], "v": values.clone()[:, :, 2:], "used": 20}
        with torch.no_grad():
            results.append(plan(x, cache))
    (fast, fast_cache), (slow, slow_cache) = results
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-4)
    assert fast_cache["used"] == slow_cache["used"] == 21
    torch.testing.assert_close(fast_cache["k"][:, :, :21], slow_cache["k"][:, :, :21])
    torch.testing.assert_close(fast_cache["v"][:, :, :21], slow_cache["v"][:, :, :21])
