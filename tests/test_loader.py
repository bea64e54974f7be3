"""The loader: exactly-once epochs, determinism, shards, workers (fork and spawn), SQL sources, values."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tensorhouse as th
from tensorhouse.synth import scene

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader  # noqa: E402

N = 157  # not a multiple of any batch or world size used here


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> th.Dataset:
    uri = str(tmp_path_factory.mktemp("loader") / "ds")
    rng = np.random.default_rng(0)
    imgs = [scene(rng, 32, 32)[0] for _ in range(N)]
    d = th.create(
        uri,
        {
            "image": th.Image("jpeg"),
            "raw": th.Tensor("uint8", (32, 32, 3)),
            "label": "int64",
            "boxes": th.BBox(),
            "name": th.Text(),
        },
        chunk_bytes=20_000,
    )
    half = N // 2
    for a, b in ((0, half), (half, N)):
        d.append(
            {
                "image": imgs[a:b],
                "raw": np.stack(imgs[a:b]),
                "label": np.arange(a, b),
                "boxes": [np.full((i % 4, 4), i, np.float32) for i in range(a, b)],
                "name": [f"row{i}" for i in range(a, b)],
            }
        )
    return d


def labels(loader: Any) -> list[int]:
    out: list[int] = []
    for b in loader:
        out += [int(x) for x in b["label"]]
    return out


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("mode", ["chunk", "full"])
def test_each_epoch_covers_every_row_exactly_once(ds: th.Dataset, shuffle: bool, mode: str) -> None:
    loader = th.loader(
        ds, batch_size=16, shuffle=shuffle, shuffle_mode=mode, columns=["label"], format="numpy"
    )
    for epoch in range(2):
        loader.set_epoch(epoch)
        got = labels(loader)
        assert sorted(got) == list(range(N))
        assert (got == list(range(N))) == (not shuffle)
    assert len(loader) == -(-N // 16)


def test_drop_last(ds: th.Dataset) -> None:
    loader = th.loader(
        ds, batch_size=16, drop_last=True, shuffle=True, columns=["label"], format="numpy"
    )
    sizes = [len(b["label"]) for b in loader]
    assert sizes == [16] * (N // 16) and len(loader) == N // 16


def test_deterministic_for_seed_and_epoch(ds: th.Dataset) -> None:
    def order(seed: int, epoch: int) -> list[int]:
        loader = th.loader(
            ds, batch_size=10, shuffle=True, seed=seed, columns=["label"], format="numpy"
        )
        loader.set_epoch(epoch)
        return labels(loader)

    assert order(1, 0) == order(1, 0)
    assert order(1, 0) != order(1, 1)
    assert order(1, 0) != order(2, 0)


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shards_are_disjoint_complete_and_equal(ds: th.Dataset, world: int) -> None:
    shards = []
    for rank in range(world):
        loader = th.loader(
            ds,
            batch_size=8,
            shuffle=True,
            seed=3,
            rank=rank,
            world_size=world,
            columns=["label"],
            format="numpy",
        )
        loader.set_epoch(5)
        shards.append(labels(loader))
    assert len({len(s) for s in shards}) == 1
    union = [x for s in shards for x in s]
    assert set(union) == set(range(N))
    assert len(union) - N < world  # only the wrap-around padding repeats
    dropped = [
        labels(
            th.loader(
                ds,
                batch_size=8,
                rank=r,
                world_size=world,
                drop_last=True,
                columns=["label"],
                format="numpy",
            )
        )
        for r in range(world)
    ]
    flat = [x for s in dropped for x in s]
    assert len(flat) == len(set(flat))  # drop_last: strictly disjoint


def test_values_equal_take(ds: th.Dataset) -> None:
    loader = th.loader(
        ds,
        batch_size=20,
        shuffle=True,
        seed=9,
        columns=["_rowid", "image", "raw", "boxes", "name"],
        format="numpy",
        reuse_buffers=False,
    )
    for b in loader:
        ref = ds.take_rowids(b["_rowid"], columns=["image", "raw", "boxes", "name"])
        np.testing.assert_array_equal(b["image"], np.stack(ref["image"]))
        np.testing.assert_array_equal(b["raw"], ref["raw"])
        assert [x.tolist() for x in b["boxes"]] == [x.tolist() for x in ref["boxes"]]
        assert list(b["name"]) == ref["name"]


def test_torch_batches_and_padding(ds: th.Dataset) -> None:
    loader = th.loader(ds, batch_size=12, columns=["image", "label", "boxes"], pad=True)
    b = next(iter(loader))
    assert (
        isinstance(b["image"], torch.Tensor)
        and b["image"].shape == (12, 32, 32, 3)
        and b["image"].dtype == torch.uint8
    )
    assert b["label"].dtype == torch.int64
    padded, shapes = b["boxes"]
    assert padded.shape == (12, 3, 4) and shapes[:, 0].tolist() == [i % 4 for i in range(12)]


def test_transform_collate_and_batch_transform(ds: th.Dataset) -> None:
    def transform(row: dict[str, Any]) -> dict[str, Any]:
        return {"x": row["raw"].astype(np.float32).mean(), "label": row["label"]}

    loader = th.loader(
        ds, batch_size=10, columns=["raw", "label"], transform=transform, format="numpy"
    )
    b = next(iter(loader))
    assert b["x"].shape == (10,) and b["label"].tolist() == list(range(10))
    loader = th.loader(
        ds, batch_size=10, columns=["label"], collate=lambda rows: len(rows), format="numpy"
    )
    assert next(iter(loader)) == 10
    loader = th.loader(
        ds,
        batch_size=10,
        columns=["label"],
        batch_transform=lambda b: b["label"].sum(),
        format="numpy",
    )
    assert next(iter(loader)) == sum(range(10))


@pytest.mark.parametrize("workers", [0, 1, 2])
@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers(ds: th.Dataset, workers: int, context: str) -> None:
    if context == "spawn" and workers == 0:
        pytest.skip("no worker processes to spawn")
    for world in (1, 2):
        seen: list[int] = []
        for rank in range(world):
            loader = th.loader(
                ds,
                batch_size=8,
                shuffle=True,
                seed=1,
                rank=rank,
                world_size=world,
                columns=["image", "label"],
                drop_last=False,
            )
            dl = DataLoader(
                loader,
                batch_size=None,
                num_workers=workers,
                multiprocessing_context=context if workers else None,
            )
            got = [int(x) for b in dl for x in b["label"]]
            assert len(got) == len(set(got)) or world > 1
            seen += got
        assert set(seen) == set(range(N))
        assert len(seen) - N < world


def test_sql_sources(ds: th.Dataset) -> None:
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()
    th.duckdb.register(con, "pets", ds.uri, rowid=True)
    rel = con.sql("SELECT _rowid, image, label, label * 2 AS twice FROM pets WHERE label % 3 = 0")
    loader = th.loader(rel, batch_size=16, dataset=ds, format="numpy", reuse_buffers=False)
    got = [b for b in loader]
    lab = np.concatenate([b["label"] for b in got])
    assert sorted(lab.tolist()) == [i for i in range(N) if i % 3 == 0]
    assert np.array_equal(np.concatenate([b["twice"] for b in got]), lab * 2)
    ref = ds.take_rowids(got[0]["_rowid"], columns=["image"])["image"]
    np.testing.assert_array_equal(got[0]["image"], np.stack(ref))
    with pytest.raises(ValueError, match="_rowid"):  # aggregated rows have no row ids
        th.loader(con.sql("SELECT label, count(*) AS n FROM pets GROUP BY label"), dataset=ds)


def test_early_stop_leaves_no_threads(ds: th.Dataset) -> None:
    before = threading.active_count()
    for _ in range(3):
        it = iter(th.loader(ds, batch_size=4, prefetch=3, columns=["image"], format="numpy"))
        next(it)
        it.close()  # what a `break` does to a generator
    assert threading.active_count() <= before


def test_bad_arguments(ds: th.Dataset) -> None:
    with pytest.raises(th.SchemaError, match="unknown column"):
        th.loader(ds, columns=["nope"])
    with pytest.raises(ValueError, match="batch_size"):
        th.loader(ds, batch_size=0)
    with pytest.raises(ValueError, match="rank"):
        th.loader(ds, rank=2, world_size=2)
    with pytest.raises(ValueError, match="shuffle_mode"):
        th.loader(ds, shuffle_mode="random")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cannot load"):
        th.loader([1, 2, 3])


def test_numpy_format_does_not_import_torch(ds: th.Dataset) -> None:
    code = (
        "import sys, tensorhouse as th\n"
        f"b = next(iter(th.loader(th.open({ds.uri!r}), batch_size=4, format='numpy')))\n"
        "print('torch' in sys.modules, sorted(b))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().startswith("False")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (CI has none)")
def test_cuda_device(ds: th.Dataset) -> None:
    loader = th.loader(ds, batch_size=16, columns=["image", "label"], device="cuda")
    b = next(iter(loader))
    assert b["image"].is_cuda and b["image"].shape == (16, 32, 32, 3)
    ref = np.stack(ds.take(list(range(16)), columns=["image"])["image"]).astype(float)
    # nvJPEG and libjpeg-turbo upsample chroma differently: close, not bit-equal.
    mse = float(((b["image"].cpu().numpy().astype(float) - ref) ** 2).mean())
    assert 10 * np.log10(255**2 / max(mse, 1e-9)) > 30, mse
    cpu = th.loader(ds, batch_size=16, columns=["image"], device="cuda", gpu_decode=False)
    np.testing.assert_array_equal(next(iter(cpu))["image"].cpu().numpy(), ref.astype(np.uint8))


def test_loader_path_in_tmp(tmp_path: Path) -> None:
    ds = th.create(str(tmp_path / "empty"), {"x": "int64"})
    assert list(th.loader(ds, format="numpy")) == []


@pytest.mark.parametrize("mode", ["chunk", "full"])
def test_s3_streaming(s3_uri: tuple[str, dict[str, Any]], mode: str) -> None:
    uri, opts = s3_uri
    rng = np.random.default_rng(1)
    imgs = [scene(rng, 24, 24)[0] for _ in range(60)]
    d = th.create(
        uri, {"image": th.Image("jpeg"), "label": "int64"}, storage_options=opts, chunk_bytes=8_000
    )
    d.append({"image": imgs, "label": np.arange(60)})
    loader = th.loader(
        th.open(uri, storage_options=opts),
        batch_size=16,
        shuffle=True,
        shuffle_mode=mode,
        columns=["_rowid", "image", "label"],
        format="numpy",
        reuse_buffers=False,
    )
    seen = []
    for b in loader:
        seen += b["label"].tolist()
        ref = d.take_rowids(b["_rowid"], columns=["image"])["image"]
        np.testing.assert_array_equal(b["image"], np.stack(ref))
    assert sorted(seen) == list(range(60))


def test_duckdb_query_names_its_dataset(ds: th.Dataset, tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    other = th.create(str(tmp_path / "other"), {"label": "int64"})
    other.append({"label": [1, 2]})
    con = duckdb.connect()
    th.duckdb.register(con, "pets", ds.uri, rowid=True)
    th.duckdb.register(con, "other", other.uri, rowid=True)
    # No dataset=: the loader finds the one registered table the query reads.
    got = labels(
        th.loader(con.sql("SELECT _rowid, image, label FROM pets WHERE label < 10"), format="numpy")
    )
    assert sorted(got) == list(range(10))
    with pytest.raises(ValueError, match="dataset="):
        th.loader(
            con.sql("SELECT p._rowid FROM pets p JOIN other o ON p.label = o.label"), format="numpy"
        )
