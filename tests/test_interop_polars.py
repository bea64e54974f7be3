"""th.polars.scan as Polars users write queries: lazy frames, with projection, filter and head pushed down."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import polars as pl
import pyarrow.compute as pc
import pytest

import tensorhouse as th
from tensorhouse.interop.polars import to_arrow_filter

mod = importlib.import_module("tensorhouse.connector.arrow_dataset")


@pytest.fixture
def pets(tmp_path: Any) -> th.Dataset:
    ds = th.create(
        str(tmp_path / "pets"),
        {
            "image": th.Image("png"),
            "label": "int32",
            "emb": th.Embedding(4),
            "boxes": th.BBox(),
            "name": th.Text(),
        },
    )
    for k in range(3):  # three fragments: label 0-99, 100-199, 200-299
        ds.append(
            {
                "image": [np.full((8, 8, 3), k, np.uint8)] * 100,
                "label": np.arange(100, dtype="int32") + 100 * k,
                "emb": np.full((100, 4), k, "float32"),
                "boxes": [np.zeros((k, 4), "float32")] * 100,
                "name": [f"pet{i + 100 * k}" for i in range(100)],
            }
        )
    return ds


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every scan the plugin starts: the columns, the filter and the row ranges it reads, and the batches pulled."""
    seen: list[dict[str, Any]] = []
    real_scanner = mod.TensorhouseArrowDataset.scanner
    real_batches = mod.TensorhouseScanner.to_batches

    def scanner(
        self: Any, columns: Any = None, filter: Any = None, batch_size: Any = None, **kw: Any
    ) -> Any:
        s = real_scanner(self, columns=columns, filter=filter, batch_size=batch_size, **kw)
        seen.append({"columns": columns, "filter": filter, "ranges": s.ranges, "batches": 0})
        return s

    def to_batches(self: Any) -> Any:
        for b in real_batches(self):
            seen[-1]["batches"] += 1
            yield b

    monkeypatch.setattr(mod.TensorhouseArrowDataset, "scanner", scanner)
    monkeypatch.setattr(mod.TensorhouseScanner, "to_batches", to_batches)
    return seen


def test_lazy_queries_give_polars_answers(pets: th.Dataset) -> None:
    lf = th.polars.scan(pets.uri)
    assert lf.collect_schema() == pl.Schema(
        {
            "image": pl.Binary,
            "label": pl.Int32,
            "emb": pl.Array(pl.Float32, 4),
            "boxes": pl.List(pl.Array(pl.Float32, 4)),
            "name": pl.String,
        }
    )
    eager = lf.collect()
    assert eager.height == 300 and eager["boxes"][150].to_list() == [[0.0] * 4]
    q = (
        lf.filter((pl.col("label") % 7 == 0) & pl.col("name").str.ends_with("0"))
        .group_by(pl.col("emb").arr.first())
        .agg(pl.len())
        .sort("emb")
    )
    ref = (
        eager.filter((pl.col("label") % 7 == 0) & pl.col("name").str.ends_with("0"))
        .group_by(pl.col("emb").arr.first())
        .agg(pl.len())
        .sort("emb")
    )
    assert q.collect().equals(ref)
    assert lf.select(pl.len()).collect().item() == 300
    assert lf.select("label").tail(2).collect()["label"].to_list() == [298, 299]
    pets.append(
        {
            "image": [np.zeros((8, 8, 3), np.uint8)],
            "label": [7],
            "emb": np.zeros((1, 4), "float32"),
            "boxes": [None],
            "name": [None],
        }
    )
    assert th.polars.scan(pets.uri, version=3).select(pl.len()).collect().item() == 300
    assert th.polars.scan(pets.uri).select(pl.len()).collect().item() == 301
    assert th.polars.scan(pets.uri, rowid=True).select("_rowid").head(1).collect().item() == 0


def test_projection_filter_and_head_are_pushed_down(
    pets: th.Dataset, scans: list[dict[str, Any]]
) -> None:
    lf = th.polars.scan(pets.uri)
    assert lf.select("label").head(5).collect()["label"].to_list() == [0, 1, 2, 3, 4]
    assert scans[-1]["columns"] == ["label"] and scans[-1]["batches"] == 1

    got = lf.filter(pl.col("label") >= 250).select("name").collect()
    assert got.height == 50
    last = scans[-1]
    assert sorted(last["columns"]) == ["label", "name"] and str(last["filter"]) == str(
        pc.field("label") >= 250
    )
    assert last["ranges"] == [(200, 300)]  # statistics skipped the first two fragments

    assert lf.filter(pl.col("label").is_in([3, 299])).select("label").collect()[
        "label"
    ].to_list() == [3, 299]
    assert scans[-1]["ranges"] == [(0, 100), (200, 300)]

    # pl.scan_pyarrow_dataset, for comparison, reads its own way; ours reads only the image column's first batch
    lf.select("image").head(3).collect()
    assert scans[-1]["columns"] == ["image"] and scans[-1]["batches"] == 1


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        (pl.col("a") == 1, pc.field("a") == 1),
        (pl.lit(1) < pl.col("a"), pc.field("a") > 1),
        ((pl.col("a") > 1) | (pl.col("b") == "x"), (pc.field("a") > 1) | (pc.field("b") == "x")),
        (~(pl.col("a") >= 2.5), ~(pc.field("a") >= 2.5)),
        (pl.col("a").is_null(), pc.field("a").is_null()),
        (pl.col("a").is_in([1, 2]), pc.field("a").isin([1, 2])),
        (
            pl.col("s").is_in(["x", "y"]) & (pl.col("a") < 3),
            pc.field("s").isin(["x", "y"]) & (pc.field("a") < 3),
        ),
    ],
)
def test_filter_translation(expr: pl.Expr, expected: pc.Expression) -> None:
    import json

    got = to_arrow_filter(json.loads(expr.meta.serialize(format="json")))
    assert got is not None and got.equals(expected)


def test_untranslatable_parts_are_left_to_polars() -> None:
    import json

    expr = (pl.col("a") > 1) & (pl.col("a") % 2 == 0)
    tree = json.loads(expr.meta.serialize(format="json"))
    assert to_arrow_filter(tree) is None
    weaker = to_arrow_filter(tree, exact=False)
    assert weaker is not None and weaker.equals(pc.field("a") > 1)
    assert (
        to_arrow_filter(
            json.loads(
                (~((pl.col("a") > 1) & (pl.col("a") % 2 == 0))).meta.serialize(format="json")
            ),
            exact=False,
        )
        is None
    )
