"""Loader pitfalls with a real torch DataLoader: epochs in persistent workers, hand splits, kept batches."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import tensorhouse as th

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader, IterableDataset, get_worker_info  # noqa: E402

N = 101  # odd: shards of 2 wrap around by one row


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> th.Dataset:
    d = th.create(
        str(tmp_path_factory.mktemp("pitfalls") / "ds"),
        {"raw": th.Tensor("uint8", (4, 4)), "label": "int64"},
        chunk_bytes=2048,
    )
    d.append(
        {
            "raw": np.arange(N, dtype=np.uint8)[:, None, None] * np.ones((1, 4, 4), np.uint8),
            "label": np.arange(N),
        }
    )
    return d


def order(batches: Any) -> list[int]:
    return [int(x) for b in batches for x in b["label"]]


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_set_epoch_reaches_persistent_workers(ds: th.Dataset, context: str) -> None:
    loader = th.loader(ds, batch_size=8, shuffle=True, seed=4, columns=["label"])
    dl = DataLoader(
        loader,
        batch_size=None,
        num_workers=2,
        persistent_workers=True,
        multiprocessing_context=context,
    )
    seen = []
    for epoch in range(3):
        loader.set_epoch(epoch)
        got = order(dl)
        assert sorted(got) == list(range(N))
        # The same epoch through fresh (non-persistent) workers: the order the epoch must have.
        ref = th.loader(ds, batch_size=8, shuffle=True, seed=4, columns=["label"])
        ref.set_epoch(epoch)
        assert got == order(
            DataLoader(ref, batch_size=None, num_workers=2, multiprocessing_context=context)
        )
        seen.append(got)
    assert seen[0] != seen[1] != seen[2]


class HandSplit(IterableDataset):  # type: ignore[type-arg]
    """torch's documented recipe: each worker builds its own part from get_worker_info()."""

    def __init__(self, uri: str, *, split: bool) -> None:
        self.uri = uri
        self.split = split

    def __iter__(self) -> Any:
        info = get_worker_info()
        assert info is not None
        kw = {"rank": info.id, "world_size": info.num_workers} if self.split else {}
        yield from th.loader(th.open(self.uri), batch_size=8, columns=["label"], **kw)


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_a_hand_split_by_worker_is_honoured(ds: th.Dataset, context: str) -> None:
    dl = DataLoader(
        HandSplit(ds.uri, split=True),
        batch_size=None,
        num_workers=2,
        multiprocessing_context=context,
    )
    got = order(dl)
    assert set(got) == set(range(N))  # not half of them
    assert len(got) == N + 1  # equal shards: one row wraps around


def test_a_loader_built_in_a_worker_without_a_split_is_refused(ds: th.Dataset) -> None:
    dl = DataLoader(
        HandSplit(ds.uri, split=False),
        batch_size=None,
        num_workers=2,
        multiprocessing_context="fork",
    )
    with pytest.raises(
        ValueError, match=r"without a split.*rank=info\.id, world_size=info\.num_workers"
    ):
        order(dl)


@pytest.mark.parametrize("fmt", ["numpy", "torch"])
def test_kept_batches_keep_their_values(ds: th.Dataset, fmt: str) -> None:
    batches = list(
        th.loader(ds, batch_size=4, shuffle=True, columns=["raw", "label"], format=fmt, prefetch=1)
    )
    assert sorted(order(batches)) == list(range(N))
    for b in batches:
        raw = np.asarray(b["raw"])
        np.testing.assert_array_equal(raw[:, 0, 0], np.asarray(b["label"]).astype(np.uint8))


def test_dropped_batches_reuse_their_buffers(ds: th.Dataset) -> None:
    loader = th.loader(ds, batch_size=4, columns=["raw"], format="numpy", prefetch=2)
    addresses = set()
    for b in loader:
        addresses.add(b["raw"].__array_interface__["data"][0])
        del b
    # A ring of prefetch + 2 buffers (+1 for the short last batch), not one per batch.
    assert len(addresses) <= 2 + 2 + 1 < -(-N // 4)


def test_a_kept_view_is_not_overwritten(ds: th.Dataset) -> None:
    kept = []
    for b in th.loader(ds, batch_size=4, columns=["raw", "label"], format="numpy", prefetch=1):
        kept.append((b["raw"][0], int(b["label"][0])))  # a view into the batch buffer
    assert all(int(v[0, 0]) == lab for v, lab in kept)


def test_config_is_one_frozen_value(ds: th.Dataset) -> None:
    cfg = th.LoaderConfig(batch_size=10, format="numpy")
    loader = th.loader(ds, cfg, columns=["label"], shuffle=True)
    assert loader.config.shuffle and not cfg.shuffle and loader.config.batch_size == 10
    with pytest.raises(AttributeError):
        loader.config.batch_size = 3  # type: ignore[misc]
    with pytest.raises(TypeError, match=r"unknown loader option\(s\) \['batchsize'\]"):
        th.loader(ds, batchsize=3)
