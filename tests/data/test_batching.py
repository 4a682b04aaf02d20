import torch

from genloom.data.batching import bucket_indices, pad, sentence_batches, stream_batches, window_batches


def test_stream_rows_continue_across_batches():
    ids = torch.arange(41)
    batches = stream_batches(ids, batch_size=2, bptt=7)
    # 40 usable inputs in 2 rows of 20: windows of 7, 7, 6
    assert [b.inputs.shape for b in batches] == [(2, 7), (2, 7), (2, 6)]
    assert [b.continues for b in batches] == [False, True, True]
    row0 = torch.cat([b.inputs[0] for b in batches])
    assert row0.tolist() == list(range(20))
    assert torch.equal(batches[0].targets, batches[0].inputs + 1)
    assert batches[1].inputs[1, 0] == 27  # row 1 resumes where its previous window ended


def test_window_batches_use_every_window_once_in_a_seeded_order():
    ids = torch.arange(41)  # 10 windows of 4, targets shifted by one
    batches = window_batches(ids, batch_size=3, bptt=4, generator=torch.Generator().manual_seed(0))
    assert [b.inputs.shape for b in batches] == [(3, 4)] * 3 + [(1, 4)]
    starts = sorted(int(row[0]) for b in batches for row in b.inputs)
    assert starts == list(range(0, 40, 4))
    assert all(torch.equal(b.targets, b.inputs + 1) and not b.continues for b in batches)
    again = window_batches(ids, batch_size=3, bptt=4, generator=torch.Generator().manual_seed(0))
    other = window_batches(ids, batch_size=3, bptt=4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(batches[0].inputs, again[0].inputs)
    assert not all(torch.equal(a.inputs, b.inputs) for a, b in zip(batches, other))


def test_pad_and_masks():
    ids, mask = pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[True, True, True], [True, False, False]]


def test_bucketing_groups_similar_lengths_and_covers_everything():
    lengths = [1, 9, 2, 8, 3, 7, 4, 6]
    batches = bucket_indices(lengths, batch_size=2, generator=torch.Generator().manual_seed(0))
    assert sorted(i for b in batches for i in b) == list(range(8))
    spreads = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches]
    assert max(spreads) <= 1


def test_sentence_batches_shift_targets_and_mask_padding():
    (batch,) = list(sentence_batches([[4, 5], [6]], batch_size=2, bos_id=1, eos_id=2, pad_id=0))
    assert batch.inputs.tolist() == [[1, 6, 0], [1, 4, 5]] or batch.inputs.tolist() == [[1, 4, 5], [1, 6, 0]]
    for inputs, targets, mask in zip(batch.inputs.tolist(), batch.targets.tolist(), batch.mask.tolist()):
        real = sum(mask)
        assert targets[: real - 1] == inputs[1:real] and targets[real - 1] == 2
        assert all(t == 0 for t in targets[real:])
