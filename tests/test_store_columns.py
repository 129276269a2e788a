"""store.columns against PostgreSQL: types, NULL conventions, times, order, an empty answer, literal binding."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import numpy as np
import psycopg
import pytest

from store.columns import Field, fetch, packed

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in microseconds since the Unix epoch

_ALL = (
    Field("flag", "flag", "boolean"),
    Field("small", "coalesce(small, -1)", "smallint"),
    Field("id", "id", "integer"),
    Field("big", "big", "bigint"),
    Field("speed", "speed", "real"),
    Field("lat", "lat", "double precision"),
    Field("t", "t", "timestamptz"),
)
_VALUES = """SELECT {} FROM (VALUES
    (true, 7::smallint, 1, 9007199254740993, 1.5::real, 22.5::float8, timestamptz '2026-01-01 00:00:00.123457+00'),
    (false, NULL, -2, -1, NULL, NULL, NULL),
    (true, -32768, 2147483647, '-9223372036854775808', '-Infinity', 'Infinity', timestamptz '1969-12-31 23:59:59+00'),
    (false, 0, 0, 0, 0, -0.0, timestamptz '2000-01-01 00:00:00+00')
) v (flag, small, id, big, speed, lat, t) ORDER BY id"""


@pytest.fixture
async def conn(fresh_database: str) -> AsyncIterator[psycopg.AsyncConnection]:
    async with await psycopg.AsyncConnection.connect(fresh_database, autocommit=True) as c:
        yield c


async def test_types_nulls_and_times(conn: psycopg.AsyncConnection) -> None:
    got = await fetch(conn, _VALUES.format(packed(_ALL)), None, _ALL)
    assert list(got) == [f.name for f in _ALL]
    assert {k: v.dtype for k, v in got.items()} == {
        "flag": np.bool_,
        "small": np.int16,
        "id": np.int32,
        "big": np.int64,
        "speed": np.float32,
        "lat": np.float64,
        "t": np.int64,
    }
    assert {f.name: f.dtype for f in _ALL} == {k: v.dtype for k, v in got.items()}
    assert got["id"].tolist() == [-2, 0, 1, 2147483647]  # in the query's order
    assert got["flag"].tolist() == [False, False, True, True]
    assert got["small"].tolist() == [-1, 0, 7, -32768]  # NULL: the query's own marker
    assert got["big"].tolist() == [-1, 0, 9007199254740993, -(2**63)]  # exact beyond a float's 53 bits
    np.testing.assert_array_equal(got["speed"], np.array([np.nan, 0, 1.5, -np.inf], dtype=np.float32))
    np.testing.assert_array_equal(got["lat"], [np.nan, 0, 22.5, np.inf])
    # Microseconds since the Unix epoch, exact; NULL is -1 (so is a time 1 µs before the epoch).
    assert got["t"].tolist() == [-1, 946_684_800_000_000, T0 + 123_457, -1_000_000]


async def test_params_are_literals_and_order_is_kept(conn: psycopg.AsyncConnection) -> None:
    fields = (Field("n", "n", "integer"), Field("t", "t", "timestamptz"))
    query = f"""SELECT {packed(fields)} FROM (SELECT n, %s + n * interval '1 second' AS t, %s AS quoted
        FROM generate_series(1, 50000) n) s WHERE quoted = %s AND n <> ALL(%s) ORDER BY n DESC"""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    got = await fetch(conn, query, (start, "it's; --", "it's; --", [3, 5]), fields)
    expected = np.setdiff1d(np.arange(1, 50001), [3, 5])[::-1]
    assert got["n"].tolist() == expected.tolist()
    assert got["t"].tolist() == (T0 + expected * 1_000_000).tolist()


async def test_an_empty_answer(conn: psycopg.AsyncConnection) -> None:
    got = await fetch(conn, _VALUES.format(packed(_ALL)).replace("ORDER BY", "WHERE false ORDER BY"), None, _ALL)
    assert {k: (len(v), v.dtype) for k, v in got.items()} == {f.name: (0, f.dtype) for f in _ALL}


async def test_a_null_integer_is_refused(conn: psycopg.AsyncConnection) -> None:
    fields = (Field("id", "id", "integer"), Field("x", "x", "double precision"))
    query = f"SELECT {packed(fields)} FROM (VALUES (1, 1.0), (NULL, 2.0)) v (id, x)"
    with pytest.raises(ValueError, match="NULL integer or boolean"):
        await fetch(conn, query, None, fields)
