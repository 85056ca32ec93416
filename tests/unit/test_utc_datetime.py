"""mesh.data.db.UtcDateTime on a real SQLite file: stored as the text SQLite's own
DATETIME writes (SQL compares it as text), read back as aware UTC."""
import datetime as dt

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import StatementError

from mesh.data.db import UtcDateTime, make_engine

PLUS_TWO = dt.timezone(dt.timedelta(hours=2))
STAMPS = [dt.datetime(2026, 12, 6, 16, 50, 1, 123, tzinfo=dt.timezone.utc),
          dt.datetime(2026, 12, 6, 16, 50, 1, tzinfo=dt.timezone.utc),  # no microseconds
          dt.datetime(2026, 12, 6, 18, 50, 0, 999999, tzinfo=PLUS_TWO),
          dt.datetime(5, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)]
metadata = MetaData()
stamps = Table("stamps", metadata, Column("id", Integer, primary_key=True),
               Column("at", UtcDateTime))


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'stamps.sqlite'}")
    metadata.create_all(engine)
    yield engine
    engine.dispose()


def test_stored_as_sqlites_own_datetime_text_and_read_back_as_utc(engine):
    sqlites_own = sqlite.DATETIME().bind_processor(sqlite.dialect())
    with engine.begin() as conn:
        conn.execute(insert(stamps), [{"id": i, "at": at} for i, at in enumerate(STAMPS)])
        stored = conn.execute(text("SELECT at FROM stamps ORDER BY id")).scalars().all()
        read = conn.execute(select(stamps.c.at).order_by(stamps.c.id)).scalars().all()
    assert stored == [sqlites_own(at.astimezone(dt.timezone.utc).replace(tzinfo=None))
                      for at in STAMPS]
    assert read == STAMPS and {at.tzinfo for at in read} == {dt.timezone.utc}


def test_compared_as_time_in_sql(engine):
    with engine.begin() as conn:
        conn.execute(insert(stamps), [{"id": i, "at": at} for i, at in enumerate(STAMPS)])
        before = conn.execute(select(stamps.c.id).where(stamps.c.at < STAMPS[0])
                              .order_by(stamps.c.id)).scalars().all()
    # 16:50:01 (no microseconds) and year 5 are earlier; 16:50:00.999999 UTC too
    assert before == [1, 2, 3]


def test_a_naive_datetime_is_refused(engine):
    with engine.begin() as conn, pytest.raises(StatementError, match="naive datetime"):
        conn.execute(insert(stamps), {"id": 1, "at": dt.datetime(2026, 12, 6)})
