import torch
from torch.utils.data import DataLoader, TensorDataset

from rlsched import DynamicBatchSampler


def test_take_crosses_epochs_and_each_epoch_is_a_permutation():
    sampler = DynamicBatchSampler(10, 4, seed=3)
    drawn = torch.cat([sampler.take(7) for _ in range(6)])  # 42 indices: 4 epochs and 2
    for epoch in range(4):
        assert sorted(drawn[10 * epoch : 10 * epoch + 10].tolist()) == list(range(10))
    assert not torch.equal(drawn[:10], drawn[10:20])  # a fresh order each epoch
    assert (sampler.epoch, sampler.position) == (4, 2)


def test_same_seed_same_order_and_restore_continues_exactly():
    a, b = DynamicBatchSampler(50, 8, seed=1), DynamicBatchSampler(50, 8, seed=1)
    assert torch.equal(a.take(33), b.take(33))
    state = a.state_dict()
    expected = a.take(100)
    c = DynamicBatchSampler(50, 8, seed=99)
    c.load_state_dict(state)
    assert torch.equal(c.take(100), expected)


def test_dataloader_sees_new_batch_size_at_the_next_batch():
    data = TensorDataset(torch.arange(100).float())
    sampler = DynamicBatchSampler(100, 8, seed=0)
    sizes = []
    for i, (batch,) in enumerate(DataLoader(data, batch_sampler=sampler)):
        sizes.append(len(batch))
        if i == 1:
            sampler.batch_size = 32
    assert sizes == [8, 8, 32, 32, 20]  # the rest of the epoch, no lag
    assert sampler.epoch == 1 and sampler.position == 0
    assert len(sampler) == 4  # a new epoch at batch 32: ceil(100 / 32)


def test_drop_last_and_no_shuffle():
    sampler = DynamicBatchSampler(10, 4, shuffle=False, drop_last=True)
    assert len(sampler) == 2
    assert list(sampler) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert list(sampler) == [[0, 1, 2, 3], [4, 5, 6, 7]]  # next epoch


def test_invalid_arguments_name_the_field():
    import pytest

    with pytest.raises(ValueError, match="batch_size"):
        DynamicBatchSampler(10, 0)
    with pytest.raises(ValueError, match="num_samples"):
        DynamicBatchSampler(0, 4)
    with pytest.raises(ValueError, match="num_samples"):
        DynamicBatchSampler(10, 4).load_state_dict(DynamicBatchSampler(11, 4).state_dict())
