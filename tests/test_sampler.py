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


def test_ranks_split_every_global_batch_and_together_see_the_single_process_sequence():
    single = DynamicBatchSampler(50, 8, seed=5)
    ranks = [DynamicBatchSampler(50, 8, seed=5, num_replicas=3, rank=r) for r in range(3)]
    schedule = [8, 8, 5, 16, 3, 9, 11]  # set on every rank alike, as the scheduler does
    batches = dropped = 0
    for epoch in range(4):
        its = [iter(s) for s in ranks]
        for i, batch in enumerate(single):
            parts = [next(it, None) for it in its]
            if len(batch) < 3:  # an epoch's last batch too small to give every rank an example
                assert parts == [None, None, None]
                dropped += 1
                break
            merged = [None] * len(batch)
            for rank, part in enumerate(parts):
                merged[rank::3] = part  # disjoint strided slices, sizes within one of each other
            assert merged == batch
            batches += 1
            for s in [single, *ranks]:
                s.batch_size = schedule[(i + epoch) % len(schedule)]
        assert all(next(it, None) is None for it in its)
    assert batches > 20 and dropped >= 1 and {s.epoch for s in [single, *ranks]} == {4}


def test_a_rank_state_restores_onto_any_number_of_ranks_and_take_shards():
    ranks = [DynamicBatchSampler(40, 6, seed=2, num_replicas=2, rank=r) for r in range(2)]
    for s in ranks:
        s.take(17)
    single = DynamicBatchSampler(40, 6, seed=7)
    single.load_state_dict(ranks[0].state_dict())
    parts = [s.take(30) for s in ranks]
    whole = single.take(30)
    assert torch.equal(parts[0], whole[0::2]) and torch.equal(parts[1], whole[1::2])


def test_len_counts_the_batches_iteration_yields():
    for kwargs in [{}, {"drop_last": True}, {"num_replicas": 4, "rank": 3}]:
        sampler = DynamicBatchSampler(50, 8, shuffle=False, **kwargs)
        sampler.take(4)
        assert len(sampler) == len(list(sampler))
    assert len(DynamicBatchSampler(50, 8, num_replicas=4, rank=0)) == 6  # the last 2 are too few for 4 ranks


def test_claimed_batch_sizes_follow_the_yielded_batches():
    data = TensorDataset(torch.arange(20).float())
    sampler = DynamicBatchSampler(20, 8, seed=0, num_replicas=2, rank=1)
    sizes = []
    for (batch,) in DataLoader(data, batch_sampler=sampler):
        sizes.append((len(batch), sampler.claim_batch_size()))
    assert sizes == [(4, 8), (4, 8), (2, 4)]  # this rank's examples, and the global batch
    assert sampler.claim_batch_size() is None


def test_invalid_replicas_and_ranks_name_the_field():
    import pytest

    with pytest.raises(ValueError, match="num_replicas: expected a positive integer"):
        DynamicBatchSampler(10, 4, num_replicas=0)
    with pytest.raises(ValueError, match=r"rank: expected an integer from 0 to num_replicas - 1 = 1, got 2"):
        DynamicBatchSampler(10, 4, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="batch_size: expected an integer >= num_replicas = 4"):
        DynamicBatchSampler(10, 2, num_replicas=4, rank=0)
