import random

import torch

from spamtune.batching import TextDataset, attention_mask_from_lengths, create_dataloader, length_batches
from spamtune.data import read_split
from spamtune.tokenizers import load_tokenizer


def _datasets(data_dir):
    tok = load_tokenizer("gpt2")
    train_df = read_split(data_dir / "train.csv")
    train = TextDataset(train_df["Text"], train_df["Label"], tok, context_length=1024)
    others = []
    for name in ("validation.csv", "test.csv"):
        df = read_split(data_dir / name)
        others.append(TextDataset(df["Text"], df["Label"], tok, max_length=train.max_length))
    return train, *others


def test_book_loader_counts_and_fixed_padding(data_dir):
    train, val, test = _datasets(data_dir)
    assert train.max_length == max(train.lengths) and max(val.lengths) <= train.max_length
    loaders = [create_dataloader(train, shuffle=True, drop_last=True, padding="longest_train"),
               create_dataloader(val, padding="longest_train"), create_dataloader(test, padding="longest_train")]
    assert [len(dl) for dl in loaders] == [130, 19, 38]
    batch = next(iter(loaders[0]))
    assert batch.input_ids.shape == (8, train.max_length)
    # padded positions hold the pad id, real ones do not end early
    mask = attention_mask_from_lengths(batch.lengths, batch.input_ids.shape[1])
    assert (batch.input_ids[~mask] == 50256).all()
    assert [train.encoded[0][:5]] == [train[0][0][:5]]


def test_dynamic_padding_and_buckets(data_dir):
    train, _, _ = _datasets(data_dir)
    plain = create_dataloader(train, shuffle=True, drop_last=True, padding="dynamic")
    bucketed = create_dataloader(train, shuffle=True, drop_last=True, padding="dynamic", buckets=True)
    assert len(list(bucketed)) == len(bucketed) == 130
    seen = [i for b in bucketed.batch_sampler for i in b]
    assert len(seen) == len(set(seen)) == 1040  # each message at most once; one short batch dropped
    width_plain = sum(b.input_ids.numel() for b in plain)
    width_bucketed = sum(b.input_ids.numel() for b in bucketed)
    assert width_bucketed < 0.6 * width_plain  # buckets cut padding
    for b in bucketed:
        assert b.input_ids.shape[1] == int(b.lengths.max())
    # a new epoch gives a new order
    first = [tuple(b) for b in bucketed.batch_sampler]
    assert first != [tuple(b) for b in bucketed.batch_sampler]


def test_shuffle_is_seeded(data_dir):
    train, _, _ = _datasets(data_dir)
    a = next(iter(create_dataloader(train, shuffle=True, drop_last=True, seed=123)))
    b = next(iter(create_dataloader(train, shuffle=True, drop_last=True, seed=123)))
    assert torch.equal(a.input_ids, b.input_ids)


def test_truncation_to_context():
    tok = load_tokenizer("gpt2")
    ds = TextDataset(["word " * 3000, "short"], [1, 0], tok, context_length=1024)
    assert ds.max_length == 1024 and ds.lengths == [1024, 1]


def _cost(batches: list[list[int]], lengths: list[int], pass_cost: int, width: int | None = None) -> int:
    return sum(pass_cost + len(b) * (width or max(lengths[i] for i in b)) for b in batches)


def _cheapest(lengths: list[int], batch_size: int, pass_cost: int) -> int:
    """Every cut of the sorted lengths into consecutive batches, by brute force."""
    s = sorted(lengths)
    best = {0: 0}
    for j in range(1, len(s) + 1):
        best[j] = min(best[i] + pass_cost + (j - i) * s[j - 1] for i in range(max(0, j - batch_size), j))
    return best[len(s)]


def test_length_batches_cut_at_the_least_padding_plus_passes():
    rng = random.Random(0)
    for trial in range(200):
        lengths = [rng.choice([1, 3, 8, 20, 21, 60, 200]) for _ in range(rng.randint(1, 12))]
        batch_size, pass_cost = rng.randint(1, 6), rng.choice([0, 5, 32, 1000])
        batches = length_batches(lengths, batch_size, pass_cost)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))  # each message once
        assert all(1 <= len(b) <= batch_size for b in batches)
        assert _cost(batches, lengths, pass_cost) == _cheapest(lengths, batch_size, pass_cost)
    # a request of short and long messages: the short ones are not padded to the long ones' width
    lengths = [5] * 20 + [200] * 4
    batches = length_batches(lengths, 32, 32)
    assert sorted(map(sorted, batches)) == [list(range(20)), list(range(20, 24))]
    assert length_batches(lengths, 32, 10**6) == [sorted(range(24), key=lengths.__getitem__)]  # passes dear: one
    # padded to one width, only the passes count: as few as the batch size allows
    assert [len(b) for b in length_batches(lengths, 8, 32, width=256)] == [8, 8, 8]
    assert length_batches([], 8) == []
