"""Ingestion: image folders, COCO, Parquet, CSV, Arrow, WebDataset; row-by-row against the source.

Also: corrupt images skipped (or fatal with strict), malformed COCO files,
and crash-and-rerun idempotency (every row exactly once).
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import simplejpeg

import tensorhouse as th
from tensorhouse.format.chunks.codecs import decode_image, encode_image
from tensorhouse.ingest import IngestError, IngestInterrupted
from tensorhouse.synth import scene


# -- source generators (shared with test_cli.py) ----------------------------------------
def jpeg(rng: np.random.Generator, h: int = 24, w: int = 32) -> bytes:
    return bytes(simplejpeg.encode_jpeg(scene(rng, h, w)[0], quality=90, colorspace="RGB"))


def make_folder(
    root: Path, classes: tuple[str, ...] = ("cat", "dog", "fish"), per_class: int = 4, seed: int = 0
) -> dict[str, bytes]:
    """Real JPEG files in root/<class>/<i>.jpg; returns relative path -> bytes."""
    rng = np.random.default_rng(seed)
    files = {}
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            data = jpeg(rng, int(rng.integers(16, 40)), int(rng.integers(16, 40)))
            (root / c / f"{i:03d}.jpg").write_bytes(data)
            files[f"{c}/{i:03d}.jpg"] = data
    return files


def rows_of(uri: str, columns: list[str] | None = None) -> dict[str, Any]:
    ds = th.open(uri)
    return ds.take(np.arange(len(ds)), columns=columns, decode=False)


# -- image folder -------------------------------------------------------------------------
def test_imagefolder_rows_match_source(tmp_path: Path) -> None:
    files = make_folder(tmp_path / "src")
    uri = str(tmp_path / "ds")
    report = th.ingest.imagefolder(str(tmp_path / "src"), uri, batch_rows=5, progress=False)
    assert (report.rows, report.skipped, report.batches_committed, report.batches_skipped) == (
        12,
        0,
        3,
        0,
    )
    assert report.bytes == sum(len(b) for b in files.values()) and report.version == 3
    ds = th.open(uri)
    assert ds.schema == th.Schema.of(
        {
            "image": th.Image("jpeg"),
            "label": th.ClassLabel(["cat", "dog", "fish"]),
            "path": th.Text(),
        }
    )
    got = rows_of(uri)
    assert got["path"] == sorted(files)
    for i, rel in enumerate(got["path"]):
        assert bytes(got["image"][i]) == files[rel]  # stored byte for byte
        assert got["label"][i] == ["cat", "dog", "fish"].index(rel.split("/")[0])
    assert [h.message for h in ds.history()][1:] == [
        f"ingest imagefolder batch {i}" for i in range(3)
    ]
    again = th.ingest.imagefolder(str(tmp_path / "src"), uri, batch_rows=5, progress=False)
    assert (again.rows, again.batches_committed, again.batches_skipped, again.version) == (
        0,
        0,
        3,
        3,
    )
    assert "already committed" in str(again)
    with pytest.raises(IngestError, match=r"other batch limits.*rows=5"):
        th.ingest.imagefolder(str(tmp_path / "src"), uri, batch_rows=4, progress=False)


def test_imagefolder_png_only_and_mixed(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    imgs = [scene(rng, 20, 24)[0] for _ in range(4)]
    src = tmp_path / "png"
    for i, img in enumerate(imgs):
        (src / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        (src / f"c{i % 2}" / f"{i}.png").write_bytes(encode_image("png", img))
    th.ingest.imagefolder(str(src), str(tmp_path / "a"), progress=False)
    ds = th.open(str(tmp_path / "a"))
    assert ds.schema["image"] == th.Image("png")
    got = rows_of(str(tmp_path / "a"))
    for path, data in zip(got["path"], got["image"], strict=True):
        assert bytes(data) == (src / path).read_bytes()
    # mixed: a PNG (one RGBA, one named .JPEG as in ImageNet) among JPEGs is converted to JPEG
    mixed = tmp_path / "mixed"
    make_folder(mixed, classes=("a",), per_class=2)
    rgba = np.dstack([imgs[0], np.full(imgs[0].shape[:2], 200, np.uint8)])
    (mixed / "a" / "x.png").write_bytes(encode_image("png", rgba))
    (mixed / "a" / "y.JPEG").write_bytes(encode_image("png", imgs[1]))
    th.ingest.imagefolder(str(mixed), str(tmp_path / "b"), progress=False)
    ds = th.open(str(tmp_path / "b"))
    assert ds.schema["image"] == th.Image("jpeg") and len(ds) == 4
    got = rows_of(str(tmp_path / "b"))
    for path, data, src_img in (("a/x.png", None, imgs[0]), ("a/y.JPEG", None, imgs[1])):
        data = got["image"][got["path"].index(path)]
        assert bytes(data[:3]) == b"\xff\xd8\xff"
        dec = decode_image("jpeg", bytes(data))
        assert dec.shape == src_img.shape and np.abs(dec.astype(int) - src_img).mean() < 8


def test_corrupt_images_skipped_or_strict(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    files = make_folder(tmp_path / "src", per_class=3)
    (tmp_path / "src" / "dog" / "bad.jpg").write_bytes(b"this is not a jpeg")
    (tmp_path / "src" / "fish" / "trunc.jpg").write_bytes(files["fish/000.jpg"][:1])
    (tmp_path / "src" / "cat" / "notes.txt").write_text("ignored: not an image extension")
    # JPEG magic, broken header: passes the loader's magic check, refused by the format's header check
    (tmp_path / "src" / "fish" / "fake.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with caplog.at_level(logging.WARNING, logger="tensorhouse.ingest"):
        report = th.ingest.imagefolder(str(tmp_path / "src"), str(tmp_path / "ds"), progress=False)
    assert (report.rows, report.skipped) == (9, 3)
    assert any("dog/bad.jpg" in s for s in report.skipped_items)
    assert any("fish/trunc.jpg" in s for s in report.skipped_items)
    assert any("fish/fake.jpg" in s and "JPEG header" in s for s in report.skipped_items)
    assert "skipped 3 unreadable" in str(report) and "dog/bad.jpg" in caplog.text
    assert sorted(rows_of(str(tmp_path / "ds"), ["path"])["path"]) == sorted(files)
    # strict: an error naming the file; batches before it stay committed, none after
    with pytest.raises(IngestError, match=r"dog/bad\.jpg"):
        th.ingest.imagefolder(
            str(tmp_path / "src"),
            str(tmp_path / "strict"),
            batch_rows=4,
            strict=True,
            progress=False,
        )
    assert (
        len(th.open(str(tmp_path / "strict"))) == 4
    )  # cat/* is batch 0; dog/bad.jpg is in batch 1
    (tmp_path / "src" / "dog" / "bad.jpg").unlink()
    (tmp_path / "src" / "fish" / "trunc.jpg").unlink()
    with pytest.raises(IngestError, match=r"fish/fake\.jpg"):
        th.ingest.imagefolder(
            str(tmp_path / "src"),
            str(tmp_path / "strict2"),
            batch_rows=4,
            strict=True,
            progress=False,
        )
    assert len(th.open(str(tmp_path / "strict2"))) == 8  # fish/fake.jpg is in batch 2


def test_validate_decode_catches_truncated_data(tmp_path: Path) -> None:
    files = make_folder(tmp_path / "src", classes=("a",), per_class=2)
    data = files["a/000.jpg"]
    (tmp_path / "src" / "a" / "cut.jpg").write_bytes(
        data[: len(data) * 2 // 3]
    )  # header intact, data cut
    header = th.ingest.imagefolder(str(tmp_path / "src"), str(tmp_path / "h"), progress=False)
    full = th.ingest.imagefolder(
        str(tmp_path / "src"), str(tmp_path / "d"), validate="decode", progress=False
    )
    assert (header.rows, header.skipped) == (3, 0)
    assert (full.rows, full.skipped) == (2, 1) and "a/cut.jpg" in full.skipped_items[0]


def test_crash_then_rerun_commits_every_row_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = make_folder(tmp_path / "src", per_class=5)  # 15 files, batches of 3 -> 5 batches
    mod = importlib.import_module(
        "tensorhouse.ingest.imagefolder"
    )  # the package attribute is the function

    real = mod.load_images
    calls = {"n": 0}

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(mod, "load_images", flaky)
    uri = str(tmp_path / "ds")
    with pytest.raises(RuntimeError, match="disk on fire"):
        th.ingest.imagefolder(str(tmp_path / "src"), uri, batch_rows=3, progress=False)
    assert len(th.open(uri)) == 6  # batches 0 and 1 committed, in order
    monkeypatch.setattr(mod, "load_images", real)
    report = th.ingest.imagefolder(str(tmp_path / "src"), uri, batch_rows=3, progress=False)
    assert (report.batches_skipped, report.batches_committed, report.rows) == (2, 3, 9)
    paths = rows_of(uri, ["path"])["path"]
    assert paths == sorted(files)  # exactly once, in order
    assert report.version == 5


def test_keyboard_interrupt_keeps_last_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_folder(tmp_path / "src", per_class=4)  # 12 files, batches of 2
    mod = importlib.import_module("tensorhouse.ingest.imagefolder")
    real = mod.load_images
    calls = {"n": 0}

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(mod, "load_images", interrupted)
    monkeypatch.setattr(importlib.import_module("tensorhouse.ingest.engine"), "WRITE_AHEAD", 1)
    uri = str(tmp_path / "ds")
    with pytest.raises(IngestInterrupted) as info:
        th.ingest.imagefolder(str(tmp_path / "src"), uri, batch_rows=2, progress=False)
    # batches 0 and 1 committed; batch 2, written but not committed, is dropped (Ctrl-C stops at once)
    assert isinstance(info.value, KeyboardInterrupt)
    assert (info.value.version, info.value.report.rows) == (2, 4)
    assert th.open(uri).version == 2 and "re-run to resume" in str(info.value)
    monkeypatch.setattr(mod, "load_images", real)
    report = th.ingest.imagefolder(str(tmp_path / "src"), uri, batch_rows=2, progress=False)
    assert (report.batches_skipped, report.rows) == (2, 8)
    assert (
        rows_of(uri, ["path"])["path"] == sorted(rows_of(uri, ["path"])["path"])
        and len(th.open(uri)) == 12
    )


def test_bad_folders_and_schema_mismatch(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="does not exist"):
        th.ingest.imagefolder(str(tmp_path / "nope"), str(tmp_path / "ds"), progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(IngestError, match="no class folders"):
        th.ingest.imagefolder(str(tmp_path / "empty"), str(tmp_path / "ds"), progress=False)
    make_folder(tmp_path / "src", classes=("a", "b"), per_class=1)
    th.create(str(tmp_path / "other"), {"x": "int64"})
    with pytest.raises(th.DatasetExistsError, match="schema"):
        th.ingest.imagefolder(str(tmp_path / "src"), str(tmp_path / "other"), progress=False)
    with pytest.raises(ValueError, match="batch_rows"):
        th.ingest.imagefolder(
            str(tmp_path / "src"), str(tmp_path / "ds"), batch_rows=0, progress=False
        )


# -- COCO -----------------------------------------------------------------------------------
def make_coco(root: Path, n: int = 7, seed: int = 0) -> dict[str, Any]:
    """Images with synth boxes (xyxy -> COCO xywh), sparse category ids; returns the document."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    cat_ids = [1, 5, 9]
    doc: dict[str, Any] = {
        "info": {"year": 2024},
        "categories": [{"id": c, "name": f"c{c}"} for c in cat_ids],
        "images": [],
        "annotations": [],
    }
    ann_id = 100
    for i in range(n):
        h, w = int(rng.integers(24, 48)), int(rng.integers(24, 48))
        img, boxes, labels = scene(rng, h, w, max_objects=3)
        name = f"{i:04d}.jpg"
        (root / "images" / name).write_bytes(simplejpeg.encode_jpeg(img, quality=90))
        image_id = 1000 + 7 * i  # ids are not positions
        doc["images"].append(
            {"id": image_id, "file_name": name, "width": w, "height": h, "license": 1}
        )
        for b, lab in zip(boxes, labels, strict=True):
            xywh = [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]
            doc["annotations"].append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": cat_ids[lab],
                    "bbox": xywh,
                    "area": xywh[2] * xywh[3],
                    "iscrowd": 0,
                }
            )
            ann_id += 1
    (root / "ann.json").write_text(json.dumps(doc))
    return doc


def test_coco_rows_match_source(tmp_path: Path) -> None:
    doc = make_coco(tmp_path)
    (tmp_path / "images" / "0003.jpg").unlink()  # a listed image whose file is missing: skipped
    uri = str(tmp_path / "ds")
    report = th.ingest.coco(
        str(tmp_path / "ann.json"), str(tmp_path / "images"), uri, batch_rows=3, progress=False
    )
    assert (report.rows, report.skipped) == (6, 1) and "0003.jpg" in report.skipped_items[0]
    ds = th.open(uri)
    assert ds.schema["boxes"] == th.BBox("xywh") and ds.schema["categories"] == th.Tensor(
        "int32", (None,)
    )
    got = ds.take(np.arange(len(ds)), decode=False)
    expected = [im for im in doc["images"] if im["file_name"] != "0003.jpg"]
    assert got["image_id"].tolist() == [im["id"] for im in expected]
    for i, im in enumerate(expected):
        anns = [a for a in doc["annotations"] if a["image_id"] == im["id"]]
        assert bytes(got["image"][i]) == (tmp_path / "images" / im["file_name"]).read_bytes()
        np.testing.assert_allclose(
            got["boxes"][i], np.asarray([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
        )
        assert got["boxes"][i].dtype == np.float32
        assert got["categories"][i].tolist() == [a["category_id"] for a in anns]
        meta = got["meta"][i]
        assert (meta["file_name"], meta["width"], meta["height"], meta["license"]) == (
            im["file_name"],
            im["width"],
            im["height"],
            1,
        )
        assert meta["annotations"] == [
            {"id": a["id"], "area": a["area"], "iscrowd": 0} for a in anns
        ]
    assert (
        th.ingest.coco(
            str(tmp_path / "ann.json"), str(tmp_path / "images"), uri, batch_rows=3, progress=False
        ).batches_skipped
        == 3
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("images"), "missing key 'images'"),
        (lambda d: d.update(images={}), "'images' must be a list"),
        (lambda d: d["images"][1].pop("file_name"), r"images\[1\] \(id 1007\) has no 'file_name'"),
        (lambda d: d["images"][2].update(id=1000), "duplicate image id 1000"),
        (
            lambda d: d["annotations"][0].update(image_id=5),
            r"annotations\[0\] \(id 100\) refers to unknown image_id 5",
        ),
        (lambda d: d["annotations"][1].update(category_id=2), "unknown category_id 2"),
        (lambda d: d["annotations"][2].update(bbox=[1, 2, 3]), "bbox must be 4 finite numbers"),
        (
            lambda d: d["annotations"][2].update(bbox=[1, 2, "3", 4]),
            "bbox must be 4 finite numbers",
        ),
        (lambda d: d["annotations"][2].update(bbox=[1, 2, -3, 4]), "width and height must be >= 0"),
        (lambda d: d["annotations"][0].pop("bbox"), "has no 'bbox'"),
        (lambda d: d.pop("categories"), "missing key 'categories'"),
    ],
)
def test_malformed_coco_is_a_clear_error(tmp_path: Path, mutate: Any, message: str) -> None:
    doc = make_coco(tmp_path, n=4)
    mutate(doc)
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(IngestError, match=message):
        th.ingest.coco(
            str(tmp_path / "bad.json"),
            str(tmp_path / "images"),
            str(tmp_path / "ds"),
            progress=False,
        )
    assert not (tmp_path / "ds").exists()  # validated before anything is written


def test_coco_not_json(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(IngestError, match="not valid JSON"):
        th.ingest.coco(
            str(tmp_path / "bad.json"), str(tmp_path), str(tmp_path / "ds"), progress=False
        )


# -- Parquet, CSV, Arrow ----------------------------------------------------------------------
def test_parquet_glob_with_types(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    tables = []
    for part in range(2):
        n = 7
        imgs = [jpeg(rng) for _ in range(n)]
        if part == 1:
            imgs[3] = b"garbage"  # a corrupt image row is skipped
        t = pa.table(
            {
                "img": pa.array(imgs, pa.binary()),
                "label": pa.array(rng.integers(0, 5, n)),
                "emb": pa.array(
                    list(rng.random((n, 4)).astype(np.float32)), pa.list_(pa.float32())
                ),
                "caption": [f"p{part} r{i}" for i in range(n)],
                "score": rng.random(n),
            }
        )
        pq.write_table(t, tmp_path / f"part-{part}.parquet", row_group_size=3)
        tables.append(t)
    uri = str(tmp_path / "ds")
    report = th.ingest.parquet(
        str(tmp_path / "part-*.parquet"),
        uri,
        batch_rows=4,
        types={"img": th.Image("jpeg"), "emb": {"kind": "embedding", "dim": 4}},
        progress=False,
    )
    assert (report.rows, report.skipped) == (
        13,
        1,
    ) and "row 10, column 'img'" in report.skipped_items[0]
    ds = th.open(uri)
    assert ds.schema["emb"] == th.Embedding(4) and ds.schema["caption"] == th.Text()
    assert ds.schema["label"] == th.Scalar("int64") and ds.schema["score"] == th.Scalar("float64")
    src = pa.concat_tables(tables).to_pylist()
    del src[10]
    got = rows_of(uri)
    for i, row in enumerate(src):
        assert bytes(got["img"][i]) == row["img"]
        assert (got["label"][i], got["caption"][i], got["score"][i]) == (
            row["label"],
            row["caption"],
            row["score"],
        )
        np.testing.assert_array_equal(got["emb"][i], np.asarray(row["emb"], np.float32))
    assert (
        th.ingest.parquet(
            str(tmp_path / "part-*.parquet"),
            uri,
            batch_rows=4,
            types={"img": th.Image("jpeg"), "emb": th.Embedding(4)},
            progress=False,
        ).rows
        == 0
    )
    with pytest.raises(IngestError, match="no files match"):
        th.ingest.parquet(str(tmp_path / "nothing-*.parquet"), uri, progress=False)


def test_parquet_keeps_tensorhouse_types(tmp_path: Path) -> None:
    src = th.create(
        str(tmp_path / "src"), {"label": th.ClassLabel(["a", "b"]), "boxes": th.BBox("xywh")}
    )
    src.append(
        {"label": [1, 0], "boxes": [np.ones((2, 4), np.float32), np.zeros((0, 4), np.float32)]}
    )
    pq.write_table(src.to_table(), tmp_path / "t.parquet")
    th.ingest.parquet(str(tmp_path / "t.parquet"), str(tmp_path / "ds"), progress=False)
    ds = th.open(str(tmp_path / "ds"))
    assert ds.schema == src.schema and ds.take([0])["boxes"][0].shape == (2, 4)


def test_csv_with_image_paths(tmp_path: Path) -> None:
    files = make_folder(tmp_path / "imgs", classes=("a",), per_class=5)
    lines = ["file,label,caption"] + [
        f"imgs/{rel},{i},row {i}" for i, rel in enumerate(sorted(files))
    ]
    lines.append("imgs/a/missing.jpg,9,gone")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    uri = str(tmp_path / "ds")
    report = th.ingest.csv(
        str(tmp_path / "labels.csv"),
        uri,
        types={"file": th.Image("jpeg"), "label": "int32"},
        progress=False,
    )
    assert (report.rows, report.skipped) == (5, 1) and "missing.jpg" in report.skipped_items[0]
    got = rows_of(uri)
    assert th.open(uri).schema["label"] == th.Scalar("int32")
    for i, rel in enumerate(sorted(files)):
        assert bytes(got["file"][i]) == files[rel]
        assert (got["label"][i], got["caption"][i]) == (i, f"row {i}")


def test_arrow_sources_and_resume(tmp_path: Path) -> None:
    table = pa.table({"x": np.arange(25), "name": [f"n{i}" for i in range(25)]})
    uri = str(tmp_path / "ds")
    assert th.ingest.arrow(table, uri, batch_rows=10, progress=False).batches_committed == 3
    again = th.ingest.arrow(table, uri, batch_rows=10, progress=False)
    assert (again.rows, again.batches_skipped) == (0, 3)
    # a different source (other first rows) gets its own id and is appended
    other = pa.table({"x": np.arange(100, 103), "name": ["a", "b", "c"]})
    reader = pa.RecordBatchReader.from_batches(other.schema, other.to_batches())
    assert th.ingest.arrow(reader, uri, progress=False).rows == 3
    assert rows_of(uri)["x"].tolist() == [*range(25), 100, 101, 102]
    assert th.ingest.arrow(other.to_batches(), uri, source_id="other-v1", progress=False).rows == 3
    with pytest.raises(TypeError, match="cannot ingest"):
        th.ingest.arrow({"x": [1]}, uri, progress=False)


def test_arrow_hugging_face_image_structs(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    imgs = [jpeg(rng) for _ in range(3)]
    (tmp_path / "x.jpg").write_bytes(imgs[2])
    hf = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    rows = [{"bytes": imgs[0], "path": "a.jpg"}, None, {"bytes": None, "path": "x.jpg"}]
    table = pa.table({"image": pa.array(rows, hf), "label": [1, 2, 3]})
    th.ingest.arrow(
        table,
        str(tmp_path / "ds"),
        types={"image": th.Image("jpeg")},
        base_dir=str(tmp_path),
        progress=False,
    )
    got = rows_of(str(tmp_path / "ds"))
    assert (
        bytes(got["image"][0]) == imgs[0]
        and got["image"][1] is None
        and bytes(got["image"][2]) == imgs[2]
    )


# -- WebDataset --------------------------------------------------------------------------------
def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_shards(
    root: Path, shards: int = 2, per_shard: int = 5, seed: int = 0
) -> list[dict[str, Any]]:
    """Tar shards of samples with jpg, cls, json, txt (one missing), npy; returns the samples in order."""
    rng = np.random.default_rng(seed)
    samples = []
    root.mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        with tarfile.open(root / f"shard-{s:06d}.tar", "w") as tar:
            for i in range(per_shard):
                key = f"s{s}/{i:04d}"
                sample = {
                    "key": key,
                    "jpg": jpeg(rng),
                    "cls": int(rng.integers(0, 10)),
                    "json": {"i": i, "shard": s},
                    "txt": None if i == 2 else f"caption {s}-{i}",
                    "npy": rng.random((int(rng.integers(1, 4)), 3)).astype(np.float32),
                }
                add_member(tar, f"{key}.jpg", sample["jpg"])
                add_member(tar, f"{key}.cls", str(sample["cls"]).encode())
                add_member(tar, f"{key}.json", json.dumps(sample["json"]).encode())
                if sample["txt"] is not None:
                    add_member(tar, f"{key}.txt", sample["txt"].encode())
                buf = io.BytesIO()
                np.save(buf, sample["npy"])
                add_member(tar, f"{key}.npy", buf.getvalue())
                samples.append(sample)
    return samples


def test_webdataset_rows_match_source(tmp_path: Path) -> None:
    samples = make_shards(tmp_path / "shards")
    uri = str(tmp_path / "ds")
    report = th.ingest.webdataset(
        str(tmp_path / "shards" / "shard-{000000..000001}.tar"), uri, batch_rows=3, progress=False
    )
    assert (report.rows, report.skipped, report.batches_committed) == (10, 0, 4)
    ds = th.open(uri)
    assert ds.columns == ["key", "jpg", "cls", "json", "txt", "npy"]
    assert ds.schema["jpg"] == th.Image("jpeg") and ds.schema["npy"] == th.Tensor(
        "float32", (None, None)
    )
    got = ds.take(np.arange(len(ds)), decode=False)
    for i, s in enumerate(samples):
        assert got["key"][i] == s["key"] and bytes(got["jpg"][i]) == s["jpg"]
        assert (got["cls"][i], got["json"][i], got["txt"][i]) == (s["cls"], s["json"], s["txt"])
        np.testing.assert_array_equal(got["npy"][i], s["npy"])
    assert (
        th.ingest.webdataset(
            str(tmp_path / "shards" / "*.tar"), uri, batch_rows=3, progress=False
        ).batches_skipped
        == 4
    )


def test_webdataset_corrupt_sample_and_damaged_shard(tmp_path: Path) -> None:
    samples = make_shards(tmp_path / "shards", shards=1, per_shard=4)
    with tarfile.open(tmp_path / "shards" / "shard-000001.tar", "w") as tar:
        add_member(tar, "bad/0.jpg", b"not a jpeg")
        add_member(tar, "bad/0.cls", b"1")
        add_member(tar, "bad/1.jpg", samples[0]["jpg"])
        add_member(tar, "bad/1.cls", b"one")  # not an integer
    raw = (tmp_path / "shards" / "shard-000000.tar").read_bytes()
    (tmp_path / "shards" / "shard-000002.tar").write_bytes(
        raw[: len(raw) // 2 + 700]
    )  # cut inside a member
    report = th.ingest.webdataset(
        str(tmp_path / "shards" / "*.tar"), str(tmp_path / "ds"), progress=False
    )
    assert report.skipped == 3, report.skipped_items
    assert any("bad/0.jpg" in s for s in report.skipped_items) and any(
        "bad/1.cls" in s for s in report.skipped_items
    )
    assert any("unreadable tar" in s for s in report.skipped_items)
    keys = rows_of(str(tmp_path / "ds"), ["key"])["key"]
    assert keys[:4] == [s["key"] for s in samples] and len(keys) == len(set(keys[4:])) + 4
    with pytest.raises(IngestError, match=r"bad/0\.jpg"):
        th.ingest.webdataset(
            str(tmp_path / "shards" / "*.tar"),
            str(tmp_path / "strict"),
            strict=True,
            progress=False,
        )


def test_webdataset_unknown_field_needs_types(tmp_path: Path) -> None:
    make_shards(tmp_path / "shards", shards=1, per_shard=3)
    with tarfile.open(tmp_path / "shards" / "shard-000001.tar", "w") as tar:
        add_member(tar, "z/0.cls", b"1")
        add_member(tar, "z/0.seg.png", b"...")
    with pytest.raises(IngestError, match=r"seg\.png.*types="):
        th.ingest.webdataset(
            str(tmp_path / "shards" / "*.tar"),
            str(tmp_path / "ds"),
            infer_samples=2,
            progress=False,
        )
    report = th.ingest.webdataset(
        str(tmp_path / "shards" / "*.tar"),
        str(tmp_path / "ds2"),
        infer_samples=2,
        types={"seg_png": th.Binary()},
        progress=False,
    )
    assert report.rows == 4 and th.open(str(tmp_path / "ds2"))[3]["seg_png"] == b"..."


def test_progress_bar_shows_rates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_folder(tmp_path / "src", classes=("a",), per_class=3)
    th.ingest.imagefolder(str(tmp_path / "src"), str(tmp_path / "ds"), progress=True)
    err = capsys.readouterr().err
    assert "ingest imagefolder" in err and "row/s" in err and "MB/s" in err
    th.ingest.imagefolder(str(tmp_path / "src"), str(tmp_path / "ds2"))  # not a TTY: no bar
    assert capsys.readouterr().err == ""


def test_report_to_dict(tmp_path: Path) -> None:
    make_folder(tmp_path / "src", classes=("a",), per_class=2)
    d = th.ingest.imagefolder(str(tmp_path / "src"), str(tmp_path / "ds"), progress=False).to_dict()
    assert d["rows"] == 2 and d["source"] == "imagefolder" and json.dumps(d)
    assert os.path.isdir(tmp_path / "ds" / "_log")
