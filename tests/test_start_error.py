"""``cti serve could not start: ...`` says a database error in one line, its driver's, never the statement and
its parameters SQLAlchemy appends to it (a row of customer data, a whole schema); other errors as they are."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from centre.process import start_error


def test_a_database_error_is_its_drivers_first_line_without_the_statement_or_its_parameters() -> None:
    engine = create_engine("sqlite://")
    with pytest.raises(OperationalError) as info, engine.connect() as conn:
        conn.execute(text("insert into leads (phone) values (:phone)"), {"phone": "+15550123456"})
    said = start_error(info.value)
    assert said == "database: OperationalError: no such table: leads"
    assert "+15550123456" not in said and "insert" not in said and "+15550123456" in str(info.value)


def test_another_error_is_said_as_it_is() -> None:
    assert start_error(OSError(98, "Address already in use")) == "[Errno 98] Address already in use"
    assert start_error(RuntimeError()) == "RuntimeError"
