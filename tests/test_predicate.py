"""The where= predicate language against a Python reference on random data."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tensorhouse as th
from tensorhouse.format.predicate import evaluate, parse

X = [0, 5, 10, -7, 20, None, 3]
F = [1.5, 2.0, -3.5, 4.0, 0.5, 0.9, None]
S = ["a", "b'c", None, "a", "z", "", "q"]
BATCH = pa.record_batch(
    {"x": pa.array(X, pa.int64()), "f": pa.array(F, pa.float32()), "s": pa.array(S)}
)
TYPES = {"x": pa.int64(), "f": pa.float32(), "s": pa.string()}


def f32(v: float) -> float:
    return float(np.float32(v))


CASES = {
    "x % 10 = 0": lambda x, f, s: x is not None and math.fmod(x, 10) == 0,
    "x - 1 > 3": lambda x, f, s: x is not None and x - 1 > 3,
    "x * 2 + 1 = 11": lambda x, f, s: x is not None and x * 2 + 1 == 11,
    "-x > 0": lambda x, f, s: x is not None and -x > 0,
    "x IN (-7, 5)": lambda x, f, s: x in (-7, 5),
    "x NOT IN (0, 20)": lambda x, f, s: x is not None and x not in (0, 20),
    "x BETWEEN -10 AND 2 * 2": lambda x, f, s: x is not None and -10 <= x <= 4,
    "f >= 0.9": lambda x, f, s: (
        f is not None and f >= f32(0.9)
    ),  # the literal takes the column's type
    "f < 2 OR s = 'a'": lambda x, f, s: (f is not None and f < 2) or s == "a",
    "NOT (s = 'b''c') AND x IS NOT NULL": lambda x, f, s: (
        s is not None and s != "b'c" and x is not None
    ),
    "s IS NULL OR f IS NULL": lambda x, f, s: s is None or f is None,
    "x / 3 = 1": lambda x, f, s: x is not None and int(x / 3) == 1,
}


@pytest.mark.parametrize("text", list(CASES))
def test_predicates_match_reference(text: str) -> None:
    got = evaluate(parse(text, TYPES), BATCH).to_pylist()
    want = [bool(CASES[text](x, f, s)) for x, f, s in zip(X, F, S, strict=True)]
    assert got == want


@pytest.mark.parametrize(
    "bad", ["x = ", "x = = 1", "nope = 1", "x = 1 1", "x IN ()", "x IN (y)", "(x = 1", "", "x @ 1"]
)
def test_malformed_predicates_raise_schema_error(bad: str) -> None:
    with pytest.raises(th.SchemaError):
        parse(bad, TYPES)


@settings(max_examples=60, deadline=None)
@given(a=st.integers(-50, 50), b=st.integers(1, 9), c=st.integers(-5, 5))
def test_arithmetic_property(a: int, b: int, c: int) -> None:
    batch = pa.record_batch({"x": pa.array([a], pa.int64())})
    got = evaluate(parse(f"x % {b} = {c}", {"x": pa.int64()}), batch).to_pylist()[0]
    assert got == (math.fmod(a, b) == c)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("s = 'abc", "unterminated string at position 4"),
        ('"x = 1', "unterminated quoted column name at position 0"),
        ("x = 3 AND", "expected a literal, found end"),
        ("x IN (1, 2", "expected \\), found end"),
        ("nope > 1", "unknown column 'nope'"),
    ],
)
def test_malformed_predicates_say_what_and_where(bad: str, message: str) -> None:
    with pytest.raises(th.SchemaError, match=message):
        parse(bad, TYPES)
