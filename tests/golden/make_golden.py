"""Writes a golden dataset: a tiny dataset of every column type, in the current on-disk format.

tests/golden/v1 holds chunk format 1; tests/golden/v2 chunk format 2 (fixed-size samples
store one size instead of an offset each); tests/golden/v3 adds chunk format 3 (columnar
chunks of ``th.Arrow`` columns: every tabular type, ``TABULAR``) next to the v2 columns;
tests/golden/v4 the same columns with group files (the tabular columns of each append in
one plain Parquet file, tensor columns in chunk files) and a checkpoint holding them.

Run once when a format version is introduced; never rewrite an existing golden
dataset (the point is that later code still reads what older code wrote).

    python tests/golden/make_golden.py tests/golden/v2
    python tests/golden/make_golden.py tests/golden/v3 --tabular
    python tests/golden/make_golden.py tests/golden/v4 --tabular --checkpoint
"""

from __future__ import annotations

import datetime
import decimal
import sys

import numpy as np
import pyarrow as pa

import tensorhouse as th


def expected() -> dict[str, list[object]]:
    """The rows of the golden dataset, as plain Python values (its test compares against these)."""
    img = (np.arange(8 * 6 * 3) % 251).astype(np.uint8).reshape(8, 6, 3)
    return {
        "label": [0, 1, 2],
        "score": [0.5, -1.25, 3.0],
        "flag": [True, False, None],
        "caption": ["zero", "ünï", None],
        "meta": [{"a": 1}, [1, 2], None],
        "blob": [b"\x00\x01", b"", None],
        "emb": [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [-1.0, 0.5, 0.25]],
        "grid": [np.arange(6, dtype=np.int16).reshape(2, 3).tolist()] * 3,
        "ragged": [
            np.ones((2, 2)).tolist(),
            np.zeros((0, 2)).tolist(),
            np.arange(6.0).reshape(3, 2).tolist(),
        ],
        "boxes": [[[1.0, 2.0, 3.0, 4.0]], [], [[0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 5.0, 6.0]]],
        "png": [img.tolist(), img[:4].tolist(), img[:, :3].tolist()],
    }


SCHEMA = {
    "label": th.ClassLabel(["a", "b", "c"]),
    "score": "float64",
    "flag": "bool",
    "caption": th.Text(),
    "meta": th.Json(),
    "blob": th.Binary(compression="zstd"),
    "emb": th.Embedding(3),
    "grid": th.Tensor("int16", (2, 3), compression="lz4"),
    "ragged": th.Tensor("float32", (None, 2)),
    "boxes": th.BBox("xywh"),
    "png": th.Image("png"),
}


def tabular() -> pa.Table:
    """The v3 dataset's tabular columns: three rows (one null) of every type ``th.Arrow`` stores."""
    utc = datetime.UTC
    dec = decimal.Decimal
    d = [datetime.date(2024, 2, 29), None, datetime.date(1, 1, 1)]
    return pa.table(
        {
            "t_date32": pa.array(d, pa.date32()),
            "t_date64": pa.array(d, pa.date64()),
            "t_time32": pa.array(
                [datetime.time(1, 2, 3), None, datetime.time(23, 59, 59)], pa.time32("s")
            ),
            "t_time64": pa.array(
                [datetime.time(1, 2, 3, 4), None, datetime.time(0)], pa.time64("ns")
            ),
            "t_ts": pa.array(
                [
                    datetime.datetime(2024, 1, 1, 12, 30, 1, 123456),
                    None,
                    datetime.datetime(9999, 12, 31, 23, 59, 59),
                ],
                pa.timestamp("us"),
            ),
            "t_tstz": pa.array(
                [
                    datetime.datetime(2024, 1, 1, tzinfo=utc),
                    None,
                    datetime.datetime(2000, 6, 1, 5, tzinfo=utc),
                ],
                pa.timestamp("ns", tz="Europe/Paris"),
            ),
            "t_dur": pa.array(
                [datetime.timedelta(seconds=1.5), None, datetime.timedelta(days=-3)],
                pa.duration("ms"),
            ),
            "t_dec": pa.array([dec("1234567890123.45"), None, dec("-0.01")], pa.decimal128(15, 2)),
            "t_dec38": pa.array(
                [dec("1" * 30 + ".12345678"), None, dec("0E-8")], pa.decimal128(38, 8)
            ),
            "t_dec256": pa.array(
                [dec("1" * 40 + ".12345"), None, dec("0.00000")], pa.decimal256(45, 5)
            ),
            "t_str": pa.array(["héllo", None, ""], pa.string()),
            "t_lstr": pa.array(["a" * 100, None, "z"], pa.large_string()),
            "t_vstr": pa.array(
                ["view", None, "a longer string than twelve bytes"], pa.string_view()
            ),
            "t_bin": pa.array([b"\x00\xff", None, b""], pa.binary()),
            "t_lbin": pa.array([b"x", None, b"y" * 50], pa.large_binary()),
            "t_vbin": pa.array([b"\x01", None, b"b" * 20], pa.binary_view()),
            "t_dict": pa.array(["red", None, "red"])
            .dictionary_encode()
            .cast(pa.dictionary(pa.int8(), pa.string())),
            "t_dates": pa.array(
                [[datetime.date(2020, 1, 1), None], None, []], pa.list_(pa.date32())
            ),
            "t_rec": pa.array(
                [{"price": dec("1.50"), "tags": ["a", "b"]}, None, {"price": None, "tags": []}],
                pa.struct([("price", pa.decimal128(9, 2)), ("tags", pa.list_(pa.string()))]),
            ),
            "t_map": pa.array([[("k", 1)], None, []], pa.map_(pa.string(), pa.int64())),
        }
    )


TABULAR = {f.name: th.Arrow(f.type) for f in tabular().schema}


def main(path: str, *, with_tabular: bool = False, checkpoint: bool = False) -> None:
    rows = expected()
    ds = th.create(path, {**SCHEMA, **TABULAR} if with_tabular else SCHEMA)
    data = {k: v for k, v in rows.items()}
    if with_tabular:
        data.update({k: tabular().column(k) for k in TABULAR})
    data["png"] = [np.asarray(x, np.uint8) for x in rows["png"]]
    data["ragged"] = [np.asarray(x, np.float32).reshape(-1, 2) for x in rows["ragged"]]
    data["boxes"] = [np.asarray(x, np.float32).reshape(-1, 4) for x in rows["boxes"]]
    ds.append({k: v[:2] for k, v in data.items()})
    ds.append({k: v[2:] for k, v in data.items()})
    ds.delete(rowids=[0])  # a deletion vector on fragment 0 (version 3)...
    ds.restore(2)  # ...then restored, so every row is live at the latest version
    ds.tag("golden")
    if checkpoint:
        ds.checkpoint()


if __name__ == "__main__":
    main(
        sys.argv[1],
        with_tabular="--tabular" in sys.argv[2:],
        checkpoint="--checkpoint" in sys.argv[2:],
    )
