"""Columnar chunks: the values of an ``Arrow`` column, validated, encoded and decoded.

One rule turns whatever a user appends (an Arrow array of any type, a
pandas or numpy column, a list of ``datetime``/``date``/``Decimal``/``str``
values) into an array of the column's Arrow type: :func:`to_column`. Every
write path (``append``, ``th.write``, ``th.ingest.*``, the CLI) goes through
it, so a ``types=``/``schema=`` override casts the same way everywhere:

- Arrow's *safe* casts only: a value that does not fit (a decimal beyond its
  precision or scale, an integer overflow, a truncated timestamp) is an error,
  never a rounded or wrapped value; decimals are never routed through a float;
- naive and time-zone-aware timestamps never mix (in one append, or between
  the values and the column's type);
- dates and timestamps lie within 0001-01-01 .. 9999-12-31 (what Delta Lake,
  Python's ``datetime`` and SQL engines all represent);
- text is valid UTF-8 (a lone surrogate from ``os.fsdecode`` is refused).

A bad value raises :class:`~tensorhouse.errors.SchemaError` naming the column
and row, before anything is written.

A chunk's data section is a Parquet file holding one column in one row
group: Parquet's encodings (dictionary, run-length and bit-packing, chosen
per page by the writer) and a compression codec chosen per chunk by
:func:`choose_codec`, which measures candidates on a sample of the chunk.
The codec is recorded in the chunk (Parquet's column metadata) and in the
log's statistics for the chunk (``"codec"``).

Example:
    >>> import datetime, decimal, pyarrow as pa
    >>> to_column([datetime.date(2024, 1, 2), None], pa.date32(), "d").to_pylist()
    [datetime.date(2024, 1, 2), None]
    >>> to_column([decimal.Decimal("1.234")], pa.decimal128(15, 2), "price")
    Traceback (most recent call last):
    ...
    tensorhouse.errors.SchemaError: column 'price', row 0: cannot store Decimal('1.234') (decimal128(4, 3)) as decimal128(15, 2): Rescaling Decimal value would cause data loss
"""

from __future__ import annotations

import datetime
import decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tensorhouse import limits
from tensorhouse.errors import CorruptChunkError, SchemaError

#: Codecs measured for each chunk, cheapest to decode first.
CODECS = ("none", "lz4", "zstd")
#: Rows of a chunk encoded with every candidate codec to pick one.
SAMPLE_ROWS = 4096
#: A codec must save this fraction over a faster one to be chosen instead.
MIN_GAIN = 0.10
#: Bytes of statistics kept for a string column's min/max.
STAT_PREFIX = 64
_ARROW_ERRORS = (
    pa.ArrowInvalid,
    pa.ArrowTypeError,
    pa.ArrowNotImplementedError,
    OverflowError,
    TypeError,
    ValueError,
    UnicodeError,
    decimal.InvalidOperation,
)
#: 0001-01-01 and 9999-12-31 23:59:59.999999999 in seconds since the epoch.
_MIN_SECONDS = -62135596800
_MAX_SECONDS = 253402300800


def _err(column: str, row: int, msg: str) -> SchemaError:
    return SchemaError(f"column {column!r}, row {row}: {msg}")


# -- values -> a validated Arrow array ---------------------------------------------
def to_column(values: Any, t: pa.DataType, column: str) -> pa.Array:
    """``values`` as an Arrow array of type ``t`` (see the module notes for the rules)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if isinstance(values, pa.Array):
        arr = cast(values, t, column)
    else:
        arr = _from_python(values, t, column)
    _validate(arr, t, column)
    return arr


def _tz_kind(v: Any) -> bool | None:
    """True for an aware datetime, False for a naive one, None for anything else."""
    if isinstance(v, datetime.datetime):
        return v.tzinfo is not None and v.tzinfo.utcoffset(v) is not None
    return None


def _check_timezones(values: Any, t: pa.DataType, column: str) -> None:
    """Naive and aware datetimes do not mix, and match the column's time zone (or its absence)."""
    if not pa.types.is_timestamp(t) or (
        isinstance(values, np.ndarray) and values.dtype.kind == "M"
    ):
        return
    if hasattr(values, "dtype") and getattr(values.dtype, "kind", "O") == "M":
        return  # a pandas datetime column: one kind throughout
    want_aware = t.tz is not None
    first: tuple[int, bool] | None = None
    for row, v in enumerate(values):
        kind = _tz_kind(v)
        if kind is None:
            continue
        if first is None:
            first = (row, kind)
        if kind != first[1]:
            raise _err(
                column,
                row,
                f"{'an aware' if kind else 'a naive'} datetime after "
                f"{'an aware' if first[1] else 'a naive'} one at row {first[0]}: naive and "
                "time-zone-aware timestamps do not mix",
            )
        if kind != want_aware:
            what = (
                f"timestamps with time zone {t.tz}"
                if want_aware
                else "naive timestamps (no time zone)"
            )
            raise _err(
                column,
                row,
                f"{'an aware' if kind else 'a naive'} datetime {v!r} in a column of {what}; "
                f"give {'aware' if want_aware else 'naive'} datetimes or declare the column "
                f"{'timestamp[us]' if want_aware else 'timestamp[us, tz=UTC]'}",
            )


def _from_python(values: Any, t: pa.DataType, column: str) -> pa.Array:
    if isinstance(values, np.ndarray) and values.ndim != 1 and not pa.types.is_nested(t):
        raise _err(column, 0, f"expected one value per row, got an array of shape {values.shape}")
    _check_timezones(values, t, column)
    if pa.types.is_decimal(t) or (pa.types.is_dictionary(t) and pa.types.is_decimal(t.value_type)):
        for row, v in enumerate(values):
            if isinstance(v, float | np.floating):
                raise _err(
                    column,
                    row,
                    f"a float ({v!r}) in a decimal column: give decimal.Decimal or str "
                    "values so that no digit is lost",
                )
    try:
        inferred = pa.array(values, from_pandas=True)
    except _ARROW_ERRORS:
        inferred = None
    if inferred is not None and not pa.types.is_null(inferred.type):
        return cast(inferred, t, column)
    try:
        return pa.array(values, type=t, from_pandas=True)
    except _ARROW_ERRORS:
        pass
    items = list(values)
    for row, v in enumerate(items):  # the error path: find the first value that does not convert
        try:
            pa.array([v], type=t, from_pandas=True)
        except _ARROW_ERRORS as err:
            raise _err(column, row, f"cannot store {v!r} as {t}: {err}") from None
    return pa.array(items, type=t, from_pandas=True)


def cast(arr: pa.Array, t: pa.DataType, column: str) -> pa.Array:
    """``arr`` as type ``t`` by Arrow's safe cast: exact or a SchemaError naming the column and first bad row."""
    if arr.type == t:
        return arr
    src = arr.type.value_type if pa.types.is_dictionary(arr.type) else arr.type
    dst = t.value_type if pa.types.is_dictionary(t) else t
    if (
        pa.types.is_timestamp(src)
        and pa.types.is_timestamp(dst)
        and (src.tz is None) != (dst.tz is None)
    ):
        raise _err(
            column,
            0,
            f"{src} values in a {dst} column: naive and time-zone-aware timestamps do not "
            "mix; cast them in the source or declare the column's type to match",
        )
    if pa.types.is_floating(src) and pa.types.is_temporal(dst):
        raise _err(column, 0, f"cannot store {src} values as {dst}")
    if pa.types.is_integer(src) and pa.types.is_decimal(dst) and not pa.types.is_dictionary(t):
        # Arrow checks an integer -> decimal cast by the widest possible value (19 digits);
        # go through a decimal wide enough, then check each value against the target.
        wide = pa.decimal128(38, dst.scale) if dst.scale <= 18 else pa.decimal256(76, dst.scale)
        arr = arr.cast(wide)
    try:
        return arr.cast(t, safe=True)
    except _ARROW_ERRORS as err:
        row = _first_bad(arr, t)
        value = arr[row].as_py() if row is not None else None
        raise _err(column, row or 0, f"cannot store {value!r} ({arr.type}) as {t}: {err}") from None


def _first_bad(arr: pa.Array, t: pa.DataType) -> int | None:
    """The first row whose cast fails, by halving (a few casts, not one per row)."""
    lo, hi = 0, len(arr)

    def fails(a: int, b: int) -> bool:
        try:
            arr.slice(a, b - a).cast(t, safe=True)
            return False
        except _ARROW_ERRORS:
            return True

    if not fails(lo, hi):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fails(lo, mid):
            hi = mid
        else:
            lo = mid
    return lo


def _bounds(t: pa.DataType) -> tuple[int, int] | None:
    """Stored-integer bounds of 0001-01-01 .. 9999-12-31 for a date or timestamp type."""
    if pa.types.is_date32(t):
        return _MIN_SECONDS // 86400, _MAX_SECONDS // 86400 - 1
    if pa.types.is_date64(t):
        return _MIN_SECONDS * 1000, _MAX_SECONDS * 1000 - 1
    if pa.types.is_timestamp(t):
        per = {"s": 1, "ms": 1000, "us": 10**6, "ns": 10**9}[t.unit]
        lo, hi = _MIN_SECONDS * per, _MAX_SECONDS * per - 1
        return max(lo, -(2**63)), min(hi, 2**63 - 1)
    return None


def _validate(arr: pa.Array, t: pa.DataType, column: str) -> None:
    values = arr.dictionary if isinstance(arr, pa.DictionaryArray) else arr
    vt = values.type
    bounds = _bounds(vt)
    if bounds is not None and len(values) - values.null_count:
        ints = values.view(pa.int32() if pa.types.is_date32(vt) else pa.int64())
        bad = pc.or_(pc.less(ints, bounds[0]), pc.greater(ints, bounds[1]))
        where = np.flatnonzero(bad.fill_null(False).to_numpy(zero_copy_only=False))
        if len(where):
            row = int(where[0])
            if isinstance(arr, pa.DictionaryArray):
                row = int(
                    np.flatnonzero(
                        pc.equal(arr.indices, row).fill_null(False).to_numpy(zero_copy_only=False)
                    )[0]
                )
            raise _err(
                column,
                row,
                f"{vt} value {ints[int(where[0])].as_py()} (stored) is outside "
                "0001-01-01 .. 9999-12-31, the range dates and timestamps can hold",
            )
    if pa.types.is_string(vt) or pa.types.is_large_string(vt) or pa.types.is_string_view(vt):
        try:
            values.validate(full=True)
        except pa.ArrowInvalid:
            row = _first_invalid_utf8(values)
            raise _err(
                column,
                row,
                "text is not valid UTF-8; store such values in a binary column "
                "(th.Binary() or 'binary')",
            ) from None
    if pa.types.is_list(vt) or pa.types.is_large_list(vt) or pa.types.is_fixed_size_list(vt):
        _validate(values.flatten(), vt.value_type, column)
    elif pa.types.is_struct(vt):
        for i in range(vt.num_fields):
            _validate(values.field(i), vt.field(i).type, f"{column}.{vt.field(i).name}")


def _first_invalid_utf8(values: pa.Array) -> int:
    as_binary = (
        values.cast(pa.large_binary())
        if not pa.types.is_string_view(values.type)
        else values.view(pa.binary_view())
    )
    for row, v in enumerate(as_binary.to_pylist()):
        if v is not None:
            try:
                v.decode("utf-8")
            except UnicodeDecodeError:
                return row
    return 0


# -- view types -------------------------------------------------------------------
def plain_type(t: pa.DataType) -> pa.DataType:
    """``t`` with ``string_view``/``binary_view`` replaced by ``large_string``/``large_binary``.

    Most Arrow compute kernels (filter, take, compare, min/max) have no view
    kernels yet; computing on the plain type and casting back is exact.
    """
    if pa.types.is_string_view(t):
        return pa.large_string()
    if pa.types.is_binary_view(t):
        return pa.large_binary()
    return t


def engine_type(t: pa.DataType) -> pa.DataType:
    """The Arrow type engines are shown for a column of type ``t``: views and dictionaries made plain.

    - ``string_view``/``binary_view`` become ``string``/``binary``: DataFusion
      pushes its literals typed like the column, and Arrow's compute kernels
      (which evaluate pushed filters in the scan) cannot compare view types yet;
    - a dictionary becomes its value type: DuckDB pushes no filter on a
      dictionary column, so ``k = 'red'`` would be evaluated after the scan.

    - ``decimal256`` becomes ``decimal128`` when its precision allows (38
      digits), else exact text: DuckDB cannot read a table with a ``decimal256``
      column at all.

    The values are the same; SQL sees VARCHAR/BLOB either way. On disk the
    column keeps its own type (a dictionary stays small).
    """
    if isinstance(t, pa.Decimal256Type):
        return pa.decimal128(t.precision, t.scale) if t.precision <= 38 else pa.string()
    if pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_binary_view(t):
        return pa.binary()
    if pa.types.is_dictionary(t):
        return engine_type(t.value_type)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        item = t.value_field.with_type(engine_type(t.value_type))
        if pa.types.is_fixed_size_list(t):
            return pa.list_(item, t.list_size)
        return pa.large_list(item) if pa.types.is_large_list(t) else pa.list_(item)
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(engine_type(f.type)) for f in t])
    if pa.types.is_map(t):
        return pa.map_(engine_type(t.key_type), engine_type(t.item_type))
    return t


def unview(arr: pa.Array) -> pa.Array:
    """``arr`` cast to :func:`plain_type` (itself when it holds no view type)."""
    t = plain_type(arr.type)
    return arr if t == arr.type else arr.cast(t)


def take(arr: pa.Array, rows: pa.Array) -> pa.Array:
    """``arr.take(rows)``, for view types too."""
    plain = unview(arr)
    out = plain.take(rows)
    return out if plain is arr else out.cast(arr.type)


# -- encoding ---------------------------------------------------------------------
def check_decoded_size(claimed: int, stored: int, what: str) -> None:
    """Refuse a Parquet footer claiming more decoded bytes than the limits allow, in all or per
    stored byte: a stranger's footer must not make the decoder allocate without bound
    (:mod:`tensorhouse.limits`)."""
    limits.check(
        "max_chunk_decompressed_bytes",
        claimed,
        what=f"{what} of {claimed} bytes decoded",
        error=CorruptChunkError,
    )
    if claimed > limits.current().compression_ratio_floor:
        limits.check(
            "max_compression_ratio",
            claimed // max(stored, 1),
            what=f"{what} of {stored} bytes claiming {claimed}",
            error=CorruptChunkError,
        )


def _parquet_bytes(arr: pa.Array, codec: str, dictionary: bool) -> bytes:
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    table = pa.Table.from_arrays([arr], names=["v"])
    # Decimals of up to 18 digits as INT64 (Parquet's own option): 6x faster to decode
    # than fixed-length byte arrays, and dictionary/RLE encodings apply to them.
    pq.write_table(
        table,
        sink,
        compression=codec,
        use_dictionary=dictionary,
        write_statistics=False,
        row_group_size=max(len(arr), 1),
        store_schema=True,
        data_page_size=1 << 20,
        store_decimal_as_integer=True,
    )
    return sink.getvalue().to_pybytes()


def _raw_and_compressed(data: bytes) -> tuple[int, int]:
    """(uncompressed, compressed) bytes of the one column chunk in a Parquet file."""
    import pyarrow.parquet as pq

    md = pq.ParquetFile(pa.BufferReader(data)).metadata
    col = md.row_group(0).column(0) if md.num_row_groups else None
    return (col.total_uncompressed_size, col.total_compressed_size) if col is not None else (0, 0)


def _dictionary_pays(arr: pa.Array) -> bool:
    """Dictionary pages pay when values repeat; measured on a sample."""
    if isinstance(arr, pa.DictionaryArray) or pa.types.is_nested(arr.type) or len(arr) == 0:
        return True
    sample = unview(arr.slice(0, SAMPLE_ROWS))
    try:
        distinct = pc.count_distinct(sample).as_py()
    except _ARROW_ERRORS:
        return True
    return bool(distinct <= 0.5 * len(sample))


def choose_codec(arr: pa.Array, dictionary: bool) -> str:
    """The codec that stores a sample of ``arr`` smallest, unless a faster one is within MIN_GAIN."""
    sample = arr.slice(0, SAMPLE_ROWS) if len(arr) > SAMPLE_ROWS else arr
    sizes: dict[str, int] = {}
    for c in CODECS[1:]:
        raw, sizes[c] = _raw_and_compressed(_parquet_bytes(sample, c, dictionary))
        sizes["none"] = raw  # the pages before compression: no third encode needed
    best = "none"
    for c in CODECS[1:]:
        if sizes[c] < (1 - MIN_GAIN) * sizes[best]:
            best = c
    return best


def encoding_choice(arr: pa.Array) -> tuple[bool, str]:
    """(dictionary pages?, codec) for ``arr``, measured on a sample (as for a chunk's data section)."""
    dictionary = _dictionary_pays(arr)
    return dictionary, choose_codec(arr, dictionary)


def encode(arr: pa.Array) -> tuple[bytes, str]:
    """A chunk's data section for ``arr`` and the codec chosen for it."""
    dictionary = _dictionary_pays(arr)
    codec = choose_codec(arr, dictionary)
    return _parquet_bytes(arr, codec, dictionary), codec


def _dictionary_pays_on_read(f: Any, t: pa.DataType | None) -> bool:
    """Whether to read a string/binary chunk as a dictionary and expand it to ``t``.

    A chunk of view type (what ingest stores for text) read for a plain
    ``string``/``binary`` consumer (the engines) would be decoded into views and
    cast, a copy of every value; when its pages are dictionary-encoded, reading
    the dictionary and taking from it is 3-5x cheaper (measured on TPC-H's flag
    and mode columns). Without a dictionary page, building one would cost more.
    """
    if t is None or not (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
    ):
        return False
    md = f.metadata
    return bool(md.num_row_groups == 1 and md.row_group(0).column(0).has_dictionary_page)


def decode(
    data: bytes | memoryview,
    t: pa.DataType | None,
    num_rows: int,
    *,
    wanted: pa.DataType | None = None,
) -> pa.Array:
    """The column a chunk's data section holds, typed ``t`` (None: as stored); CorruptChunkError if it does not.

    ``wanted``: the type the caller will cast the result to. It only chooses
    how the chunk is read: a dictionary-encoded text chunk wanted as plain
    ``string`` comes back as ``string`` (see :func:`_dictionary_pays_on_read`),
    which is exactly what the cast would give.
    """
    import pyarrow.parquet as pq

    try:
        f = pq.ParquetFile(pa.BufferReader(pa.py_buffer(data)))
        expand = t is None and _dictionary_pays_on_read(f, wanted)
        if expand:
            f = pq.ParquetFile(  # the footer parsed above is reused, not parsed again
                pa.BufferReader(pa.py_buffer(data)),
                read_dictionary=f.schema_arrow.names,
                metadata=f.metadata,
            )
        md = f.metadata
        claimed = sum(md.row_group(i).total_byte_size for i in range(md.num_row_groups))
        check_decoded_size(claimed, len(data), "columnar chunk")
        if len(f.schema_arrow) != 1 or md.num_rows != num_rows:
            raise CorruptChunkError(
                f"columnar chunk holds {len(f.schema_arrow)} columns of "
                f"{f.metadata.num_rows} rows, the header says 1 of {num_rows}"
            )
        col = f.read(use_threads=False).column(0)
    except CorruptChunkError:
        raise
    except Exception as err:  # pyarrow raises several kinds on a damaged file
        raise CorruptChunkError(f"columnar chunk does not decode: {err}") from err
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if expand and isinstance(arr, pa.DictionaryArray):
        return arr.dictionary_decode()
    if t is None:
        t = _stored_type(f.metadata.metadata) or arr.type
    if arr.type != t:
        try:
            arr = arr.cast(t)
        except _ARROW_ERRORS as err:
            raise CorruptChunkError(f"columnar chunk holds {arr.type}, not {t}: {err}") from err
    return arr


def _stored_type(meta: dict[bytes, bytes] | None) -> pa.DataType | None:
    """The written Arrow type, from the file's ``ARROW:schema`` (Parquet has no date64 or time32[s]: pyarrow
    reads those back as date32 and time32[ms], exactly convertible)."""
    import base64

    blob = (meta or {}).get(b"ARROW:schema")
    if not blob:
        return None
    try:
        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(blob)))
    except (ValueError, pa.ArrowInvalid):
        return None
    return schema.field(0).type if len(schema) == 1 else None


# -- statistics -------------------------------------------------------------------
def stat_value(s: pa.Scalar) -> Any:
    """A JSON value for a min/max scalar: integers for temporal types (stored units), text for decimals."""
    t = s.type
    if not s.is_valid:
        return None
    if pa.types.is_decimal(t):
        return str(s.as_py())
    if pa.types.is_temporal(t):
        width = pa.int32() if t.bit_width == 32 else pa.int64()
        return pa.array([s], type=t).view(width)[0].as_py()
    v = s.as_py()
    if isinstance(v, bytes):
        return None
    return v


def stat_scalar(value: Any, t: pa.DataType) -> pa.Scalar:
    """The Arrow scalar of type ``t`` for a stored statistic (the inverse of :func:`stat_value`)."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_decimal(t):
        return pa.scalar(decimal.Decimal(value), type=t)
    if pa.types.is_temporal(t):
        width = pa.int32() if t.bit_width == 32 else pa.int64()
        return pa.array([int(value)], type=width).view(t)[0]
    return pa.scalar(value, type=t)


def column_stats(arr: pa.Array) -> dict[str, Any]:
    """null_count, min and max of a column (min/max None when unknown or all null)."""
    stats: dict[str, Any] = {"null_count": int(arr.null_count), "min": None, "max": None}
    values = unview(arr.dictionary if isinstance(arr, pa.DictionaryArray) else arr)
    if len(arr) == arr.null_count or len(values) == 0:
        return stats
    try:
        mm = pc.min_max(values)
    except _ARROW_ERRORS:
        return stats
    lo, hi = mm["min"], mm["max"]
    vt = values.type
    if pa.types.is_string(vt) or pa.types.is_large_string(vt) or pa.types.is_string_view(vt):
        lo_s, hi_s = lo.as_py(), hi.as_py()
        stats["min"] = (
            lo_s[:STAT_PREFIX] if lo_s is not None else None
        )  # a prefix is still a lower bound
        stats["max"] = hi_s if hi_s is not None and len(hi_s) <= STAT_PREFIX else None
        return stats
    stats["min"], stats["max"] = stat_value(lo), stat_value(hi)
    return stats
