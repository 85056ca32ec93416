"""One SQLite file, several green threads, one green lock (`mesh.data.db`): a
writer that yields mid-transaction (to the broker, say) makes the next writer
wait on the lock, not inside the C library, so the hub keeps running; a green
thread may take it again; a writer that dies holding it lets the file go once
its connection is collected, and no green thread walks in beside it meanwhile."""
import gc
import time

import eventlet
import eventlet.event
import pytest
from sqlalchemy import Column, Integer, MetaData, Table, event, insert, select
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.orm import sessionmaker

from mesh.data.db import _FileLock, make_engine

ROWS = Table("rows", MetaData(), Column("id", Integer, primary_key=True),
             Column("writer", Integer))


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'one.db'}")
    ROWS.metadata.create_all(engine)
    yield engine
    engine.dispose()


def test_a_writer_that_yields_mid_transaction_stalls_neither_the_hub_nor_the_next_writer(
        engine):
    Session = sessionmaker(bind=engine)
    ticks = []

    def ticker():
        while True:
            ticks.append(time.monotonic())
            eventlet.sleep(0.01)

    def write(writer, pause):
        session = Session()
        session.execute(insert(ROWS).values(writer=writer))
        eventlet.sleep(pause)  # the transaction is open: the file's write lock is held
        session.commit()
        session.close()
        return time.monotonic()

    beat = eventlet.spawn(ticker)
    started = time.monotonic()
    first = eventlet.spawn(write, 1, 0.3)
    eventlet.sleep(0.05)
    second = eventlet.spawn(write, 2, 0)
    first_done, second_done = first.wait(), second.wait()
    beat.kill()

    assert second_done >= first_done  # the second writer waited for the first's commit
    assert second_done - started < 2  # not for SQLite's busy_timeout (5 s)
    # the hub ran all along: no gap between ticks near the 0.3 s the writer held the file
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert max(gaps) < 0.2
    assert _read_all(engine) == [1, 2]


def test_a_connection_that_cannot_reopen_raises_its_own_error_and_leaves_the_lock_free(
        tmp_path):
    path = tmp_path / "one.db"
    engine = make_engine(f"sqlite:///{path}")
    ROWS.metadata.create_all(engine)
    with engine.connect() as conn:
        conn.invalidate()  # the pool will open this connection again on its next use
    path.unlink()
    path.mkdir()  # a directory where the file was: SQLite cannot open it
    with pytest.raises(OperationalError, match="unable to open database file"):
        engine.connect()  # the pool checks in the failed connection it never handed out

    try:
        path.rmdir()
        ROWS.metadata.create_all(engine)
        with eventlet.Timeout(2):  # another green thread takes a connection at once
            assert eventlet.spawn(_read_all, engine).wait() == []
    finally:
        engine.dispose()


def test_a_checkout_retried_on_the_same_connection_takes_the_lock_once(engine):
    refused = []

    def refuse_once(dbapi_connection, record, proxy):
        if not refused:  # as a pre-ping of another library might: SQLAlchemy tries again
            refused.append(True)
            raise DisconnectionError("refused once")

    event.listen(engine, "checkout", refuse_once)
    with engine.connect():
        pass
    assert refused == [True]
    with eventlet.Timeout(2):  # another green thread takes a connection at once
        assert eventlet.spawn(_read_all, engine).wait() == []


def test_a_detached_connection_lets_the_file_go(engine):
    with engine.connect() as conn:
        conn.detach()  # out of the pool for good: never checked in

    def read_while_holding():
        with engine.connect():  # on the connection record detach gave back
            return _read_all(engine)  # a second connection, taken by the same holder

    with eventlet.Timeout(2):
        assert eventlet.spawn(read_while_holding).wait() == []


def test_a_green_thread_holding_the_file_may_read_it_again(engine):
    session = sessionmaker(bind=engine)()
    session.execute(insert(ROWS).values(writer=1))  # its transaction holds the file
    with eventlet.Timeout(2):
        assert _read_all(engine) == []  # its own read, on a second connection
    session.commit()
    session.close()
    assert _read_all(engine) == [1]


def test_a_writer_killed_mid_transaction_lets_the_file_go_once_its_connection_is_collected(
        engine):
    Session = sessionmaker(bind=engine)
    holding = eventlet.event.Event()

    def write_and_wait():
        session = Session()
        session.execute(insert(ROWS).values(writer=1))
        holding.send()
        eventlet.sleep(60)  # killed here, its transaction open

    writer = eventlet.spawn(write_and_wait)
    holding.wait()
    writer.kill()
    del writer
    gc.collect()  # SQLAlchemy rolls the lost connection back and checks it in

    with eventlet.Timeout(2):
        assert eventlet.spawn(_read_all, engine).wait() == []


def test_no_green_thread_takes_the_lock_a_dead_one_holds_until_it_is_let_go():
    # green threads spawned right after a dead one may be given its id (not
    # always: hence rounds); any of them that passed for the owner would walk in
    for _ in range(20):
        lock, took = _FileLock(), []

        def take(lock=lock, took=took):
            lock.acquire()
            took.append(True)

        eventlet.spawn(lock.acquire).wait()  # dies holding it, as a killed writer does
        takers = [eventlet.spawn(take) for _ in range(50)]
        eventlet.sleep(0.01)
        assert took == []
        lock.release()  # the collector's check-in, from another green thread
        eventlet.sleep(0.01)
        assert took == [True]  # the first in line, and only it
        for taker in takers:
            taker.kill()
        lock.release()
        with pytest.raises(RuntimeError):
            lock.release()  # one release too many is refused, not counted below zero


def _read_all(engine):
    with engine.connect() as conn:
        return [row.writer for row in conn.execute(select(ROWS.c.writer).order_by(ROWS.c.id))]
