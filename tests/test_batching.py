import torch

from spamtune.batching import TextDataset, attention_mask_from_lengths, create_dataloader
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
