"""Arrow type names: ``"date32"``, ``"timestamp[us, tz=UTC]"``, ``"decimal(15,2)"``, ``"list<string>"``.

:func:`parse_arrow_type` reads the names people write and every name
``str(pa.DataType)`` prints, so ``parse_arrow_type(str(t)) == t`` for the
types a column can hold; the log stores a column's Arrow type that way.

Example:
    >>> parse_arrow_type("decimal(15,2)")
    Decimal128Type(decimal128(15, 2))
    >>> parse_arrow_type("timestamp[us, tz=UTC]")
    TimestampType(timestamp[us, tz=UTC])
    >>> parse_arrow_type("struct<a: int64, b: list<date32>>")
    StructType(struct<a: int64, b: list<item: date32[day]>>)
"""

from __future__ import annotations

import re

import pyarrow as pa

from tensorhouse.errors import SchemaError

_SIMPLE: dict[str, pa.DataType] = {
    "null": pa.null(),
    "bool": pa.bool_(),
    "boolean": pa.bool_(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "uint8": pa.uint8(),
    "uint16": pa.uint16(),
    "uint32": pa.uint32(),
    "uint64": pa.uint64(),
    "float16": pa.float16(),
    "halffloat": pa.float16(),
    "float32": pa.float32(),
    "float": pa.float32(),
    "float64": pa.float64(),
    "double": pa.float64(),
    "string": pa.string(),
    "utf8": pa.string(),
    "str": pa.string(),
    "large_string": pa.large_string(),
    "large_utf8": pa.large_string(),
    "string_view": pa.string_view(),
    "utf8_view": pa.string_view(),
    "binary": pa.binary(),
    "large_binary": pa.large_binary(),
    "binary_view": pa.binary_view(),
    "date": pa.date32(),
    "date32": pa.date32(),
    "date64": pa.date64(),
    "time": pa.time64("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
}
_UNITS = ("s", "ms", "us", "ns")
_IDENT = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)")
_INT = re.compile(r"\s*(\d+)")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str) -> SchemaError:
        return SchemaError(
            f"cannot read Arrow type {self.text!r} at position {self.pos}: {what}; "
            "e.g. 'date32', 'timestamp[us, tz=UTC]', 'decimal(15,2)', 'string', 'list<int64>'"
        )

    def peek(self, s: str) -> bool:
        rest = self.text[self.pos :].lstrip()
        return rest.startswith(s)

    def eat(self, s: str) -> None:
        if not self.peek(s):
            raise self.fail(f"expected {s!r}")
        self.pos = len(self.text) - len(self.text[self.pos :].lstrip()) + len(s)

    def ident(self) -> str:
        m = _IDENT.match(self.text, self.pos)
        if not m:
            raise self.fail("expected a type name")
        self.pos = m.end()
        return m.group(1)

    def int_(self) -> int:
        m = _INT.match(self.text, self.pos)
        if not m:
            raise self.fail("expected a number")
        self.pos = m.end()
        return int(m.group(1))

    def until(self, stops: str) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in stops:
            self.pos += 1
        return self.text[start : self.pos].strip()

    def field(self, *, named: bool) -> pa.Field:
        """``[name:] type [not null]``."""
        name = "item"
        save = self.pos
        if named or ":" in self.text[self.pos :]:
            candidate = self.until(":<>,")
            if self.peek(":"):
                self.eat(":")
                name = candidate
            else:
                self.pos = save
        t = self.type_()
        nullable = True
        if self.peek("not null"):
            self.eat("not null")
            nullable = False
        return pa.field(name, t, nullable=nullable)

    def type_(self) -> pa.DataType:
        name = self.ident().lower()
        if name in ("date32", "date64") and self.peek("["):
            self.eat("[")
            self.until("]")
            self.eat("]")
        if name in ("time32", "time64", "timestamp", "duration", "time", "timestamptz"):
            unit = {"time32": "ms", "time64": "us"}.get(name, "us")
            tz = "UTC" if name == "timestamptz" else None
            if self.peek("["):
                self.eat("[")
                unit = self.until(",]")
                if self.peek(","):
                    self.eat(",")
                    self.eat("tz=")
                    tz = self.until("]")
                self.eat("]")
            if unit not in _UNITS:
                raise self.fail(f"unknown time unit {unit!r}; expected one of {_UNITS}")
            try:
                if name == "time":
                    return pa.time32(unit) if unit in ("s", "ms") else pa.time64(unit)
                if name == "time32":
                    return pa.time32(unit)
                if name == "time64":
                    return pa.time64(unit)
                if name == "duration":
                    return pa.duration(unit)
                return pa.timestamp(unit, tz=tz)
            except (pa.ArrowInvalid, ValueError) as err:
                raise self.fail(str(err)) from err
        if name in ("decimal", "numeric", "decimal128", "decimal256"):
            self.eat("(")
            precision = self.int_()
            scale = 0
            if self.peek(","):
                self.eat(",")
                neg = self.peek("-")
                if neg:
                    self.eat("-")
                scale = -self.int_() if neg else self.int_()
            self.eat(")")
            try:
                if name == "decimal256" or (name != "decimal128" and precision > 38):
                    return pa.decimal256(precision, scale)
                return pa.decimal128(precision, scale)
            except (pa.ArrowInvalid, ValueError) as err:
                raise self.fail(str(err)) from err
        if name in ("list", "large_list", "fixed_size_list"):
            self.eat("<")
            item = self.field(named=False)
            self.eat(">")
            if name == "fixed_size_list" or self.peek("["):
                self.eat("[")
                size = self.int_()
                self.eat("]")
                return pa.list_(item, size)
            return pa.large_list(item) if name == "large_list" else pa.list_(item)
        if name == "struct":
            self.eat("<")
            fields = []
            while not self.peek(">"):
                fields.append(self.field(named=True))
                if self.peek(","):
                    self.eat(",")
            self.eat(">")
            return pa.struct(fields)
        if name == "map":
            self.eat("<")
            key = self.type_()
            self.eat(",")
            value = self.type_()
            self.eat(">")
            return pa.map_(key, value)
        if name == "dictionary":
            self.eat("<")
            parts: dict[str, pa.DataType | str] = {}
            while not self.peek(">"):
                key = self.ident()
                self.eat("=")
                parts[key] = self.until(",>") if key == "ordered" else self.type_()
                if self.peek(","):
                    self.eat(",")
            self.eat(">")
            values, indices = parts.get("values"), parts.get("indices", pa.int32())
            if not isinstance(values, pa.DataType) or not isinstance(indices, pa.DataType):
                raise self.fail("a dictionary names its values=<type>")
            return pa.dictionary(indices, values, ordered=parts.get("ordered") in ("1", "true"))
        if name in _SIMPLE:
            return _SIMPLE[name]
        raise self.fail(f"unknown type name {name!r}")


def parse_arrow_type(text: str) -> pa.DataType:
    """The Arrow type a name stands for; SchemaError (naming working spellings) when none does."""
    if not isinstance(text, str):
        raise SchemaError(f"an Arrow type name is a string, got {type(text).__name__}")
    p = _Parser(text)
    t = p.type_()
    if p.text[p.pos :].strip():
        raise p.fail("unexpected text after the type")
    return t
