"""Daft reading tensorhouse datasets as its users do: a lazy DataFrame, and daft.from_arrow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import daft
import numpy as np
import pytest

import tensorhouse as th
from tensorhouse.connector.arrow_dataset import arrow_dataset


@pytest.fixture
def pets(tmp_path: Path) -> str:
    uri = str(tmp_path / "pets")
    ds = th.create(
        uri,
        {"image": th.Image("png"), "label": "int32", "emb": th.Embedding(2), "boxes": th.BBox()},
    )
    for k in range(3):
        ds.append(
            {
                "image": [np.full((4, 4, 3), k, np.uint8)] * 4,
                "label": np.arange(4, dtype="int32") + 4 * k,
                "emb": np.full((4, 2), k, "float32"),
                "boxes": [np.zeros((k, 4), "float32")] * 4,
            }
        )
    return uri


def test_lazy_daft_dataframe(pets: str) -> None:
    df = th.daft.read(pets)
    assert df.column_names == ["image", "label", "emb", "boxes"]
    got = df.where(daft.col("label") >= 6).select("label", "emb").sort("label").to_pydict()
    assert got["label"] == [6, 7, 8, 9, 10, 11] and got["emb"][0] == [1.0, 1.0]
    assert df.count_rows() == 12
    firsts = df.where(daft.col("label") % 4 == 0).select("label", "boxes").to_pydict()
    assert sorted(zip(firsts["label"], (len(b) for b in firsts["boxes"]), strict=True)) == [
        (0, 0),
        (4, 1),
        (8, 2),
    ]
    assert len(df.limit(3).select("label").to_pydict()["label"]) == 3
    th.open(pets).append(
        {"image": [None], "label": [99], "emb": np.zeros((1, 2), "float32"), "boxes": [None]}
    )
    assert (
        th.daft.read(pets, version=3).count_rows() == 12 and th.daft.read(pets).count_rows() == 13
    )


def test_filter_skips_fragments(pets: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import tensorhouse.interop.daft as mod

    starts: list[int] = []
    real = mod.TensorhouseTask.__init__

    def init(self: Any, key: Any, start: int, *args: Any) -> None:
        starts.append(start)
        real(self, key, start, *args)

    monkeypatch.setattr(mod.TensorhouseTask, "__init__", init)
    got = th.daft.read(pets).where(daft.col("label") >= 9).select("label").to_pydict()
    assert sorted(got["label"]) == [9, 10, 11] and starts == [8]  # only the last fragment is read
    starts.clear()
    assert (
        th.daft.read(pets).where((daft.col("label") % 5) == 0).count_rows() == 3
    )  # not convertible: all read
    assert starts == [0, 4, 8]


def test_daft_from_arrow_on_the_arrow_dataset(pets: str) -> None:
    ad = arrow_dataset(pets, rowid=False)
    assert daft.from_arrow(ad).count_rows() == 12
    assert daft.from_arrow(ad.scanner(columns=["label"])).to_pydict()["label"] == list(range(12))
