"""The PostgreSQL statements in PostgreSQL's own placeholder form ($1, $2...), which the
backend sends through a psycopg RawCursor so that psycopg does not parse them again on
every call. What they do is covered by the backend contract suite."""

from __future__ import annotations

import re

import pytest

from tasktrail.backends.postgres.sql import native, native_queries, rendered_queries


def test_each_name_gets_one_number_in_order_of_first_use() -> None:
    statement = native(
        "UPDATE t SET a = %(now)s, b = %(worker_id)s WHERE c < %(now)s AND d = %(limit)s"
    )
    assert statement.text == "UPDATE t SET a = $1, b = $2 WHERE c < $1 AND d = $3"
    assert statement.names == ("now", "worker_id", "limit")
    assert statement.values({"limit": 5, "now": "t0", "worker_id": 7, "unused": 0}) == [
        "t0",
        7,
        5,
    ]


def test_a_doubled_percent_is_a_percent() -> None:
    statement = native("SELECT n %% 20, %(x)s")
    assert statement == ("SELECT n % 20, $1", ("x",))


def test_a_lone_percent_is_refused() -> None:
    with pytest.raises(ValueError, match="lone %"):
        native("SELECT n % 20 WHERE x = %(x)s")


def test_a_missing_parameter_is_named() -> None:
    with pytest.raises(KeyError, match="worker_id"):
        native("SELECT %(worker_id)s").values({"now": 1})


@pytest.mark.parametrize("schema", ["tasktrail", "Acme Jobs"])
def test_every_shipped_statement_converts_and_keeps_its_parameters(schema: str) -> None:
    named = rendered_queries(schema)
    converted = native_queries(schema)
    assert converted.keys() == named.keys()
    for name, text in named.items():
        statement = converted[name]
        assert "%(" not in statement.text, name
        assert set(statement.names) == set(re.findall(r"%\((\w+)\)s", text)), name
        numbers = {int(n) for n in re.findall(r"\$(\d+)", statement.text)}
        assert numbers == set(range(1, len(statement.names) + 1)), name
