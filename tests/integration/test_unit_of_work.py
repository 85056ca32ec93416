"""The platform ends every worker's unit of work: services write and never commit."""
import eventlet
import pytest
from marshmallow import Schema
from nameko.events import event_handler
from nameko.exceptions import ConfigurationError
from sqlalchemy import String, create_engine, event, func, insert, select
from sqlalchemy.exc import IntegrityError, PendingRollbackError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, object_session, \
    sessionmaker
from sqlalchemy.orm.exc import DetachedInstanceError

from contracts.base import Int, Method, ServiceContract, Text
from contracts.errors import Conflict, ContractViolation
from mesh.data.db import Database, UnitOfWork, after_commit, make_engine
from mesh.messaging.rpc import rpc
from mesh.runtime.lifecycle import timer
from mesh.testing import wait_until


class Base(DeclarativeBase):
    pass


class Entry(Base):
    __tablename__ = "entries"
    name: Mapped[str] = mapped_column(String(50), primary_key=True)


class WriteArgs(Schema):
    name = Text(required=True)


class Written(Schema):
    name = Text(required=True)
    count = Int(required=True)


CONTRACT = ServiceContract("ledger", {
    "write": Method(WriteArgs, Written),
    "write_then_refuse": Method(WriteArgs, Written, (Conflict,)),
    "write_then_break_contract": Method(WriteArgs, Written),
})


class LedgerService:
    """Writes through its session; commits nothing itself."""

    name = "ledger"
    contract = CONTRACT
    db = Database(Base)
    ticks = 0

    def _add(self, name):
        self.db.session.add(Entry(name=name))
        self.db.session.flush()
        return {"name": name, "count": self.db.session.scalar(
            select(func.count()).select_from(Entry))}

    @rpc
    def write(self, name):
        return self._add(name)

    @rpc
    def write_then_refuse(self, name):
        self._add(name)
        raise Conflict("refused after writing")

    @rpc
    def write_then_break_contract(self, name):
        self._add(name)
        return {"name": name}  # no count: the contract does not allow it

    @timer(interval=0.2)
    def tick(self):
        if LedgerService.ticks == 0:
            LedgerService.ticks += 1
            self._add("from-a-timer")


@pytest.fixture
def ledger(mesh_containers, mesh_config, tmp_path, rpc_client):
    url = f"sqlite:///{tmp_path}/ledger.sqlite"
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    LedgerService.ticks = 0
    container = mesh_containers(LedgerService, {**mesh_config, "DATABASE_URL_LEDGER": url})
    container.start()
    # a slow commit: had the reply gone first, the caller would find nothing yet
    database = next(d for d in container.dependencies if isinstance(d, Database))
    event.listen(database.engine, "commit", lambda connection: eventlet.sleep(0.3))

    def names():
        with Session(engine) as session:
            return set(session.scalars(select(Entry.name)))
    return rpc_client.ledger, names


def test_an_rpc_s_writes_are_committed_before_its_reply(ledger):
    call, names = ledger
    assert call.write(name="kept")["name"] == "kept"
    assert "kept" in names()  # already there when the reply arrived


def test_an_rpc_that_fails_keeps_none_of_its_writes(ledger):
    call, names = ledger
    with pytest.raises(Conflict):
        call.write_then_refuse(name="refused")
    with pytest.raises(ContractViolation):
        call.write_then_break_contract(name="broken")
    assert not {"refused", "broken"} & names()


def test_any_other_worker_is_committed_as_it_returns(ledger):
    _, names = ledger
    wait_until(lambda: "from-a-timer" in names(), timeout=5)
    eventlet.sleep(0.5)
    assert LedgerService.ticks == 1


class PlainHandlerService:
    """A plain nameko handler would acknowledge before the platform commits."""

    name = "plain"
    db = Database(Base)

    @event_handler("accounts", "user_registered")
    def on_user_registered(self, payload):
        self.db.session.add(Entry(name="plain"))


def test_an_entrypoint_that_would_answer_before_the_commit_is_refused(mesh_containers,
                                                                      mesh_config):
    container = mesh_containers(PlainHandlerService, mesh_config)
    with pytest.raises(ConfigurationError, match="on_user_registered"):
        container.start()


@pytest.fixture
def work(tmp_path):
    """`(new unit of work, names committed, connections out of the pool, calls
    of the after-commit callback)` on a SQLite file."""
    engine = make_engine(f"sqlite:///{tmp_path}/work.sqlite")
    Base.metadata.create_all(engine)
    Sessions = sessionmaker(bind=engine)
    called = []

    def new():
        unit = UnitOfWork(engine, Sessions)
        after_commit(unit, lambda: called.append(1))
        return unit

    def names():
        with engine.connect() as conn:
            return set(conn.scalars(select(Entry.name)))
    yield new, names, engine.pool.checkedout, called
    engine.dispose()


def test_sql_and_orm_writes_commit_together_then_the_connection_goes_back(work):
    new, names, checked_out, called = work
    unit = new()
    unit.connection().execute(insert(Entry.__table__), {"name": "by-sql"})
    unit.add(Entry(name="by-orm"))  # an ORM session, joined to the same transaction
    assert unit.scalar(select(func.count()).select_from(Entry)) == 2
    assert checked_out() == 1
    unit.commit()
    assert names() == {"by-sql", "by-orm"}
    assert checked_out() == 0 and called == [1]
    unit.commit()  # nothing begun: nothing done
    assert called == [1]


def test_a_rollback_drops_every_write_and_the_next_statement_begins_again(work):
    new, names, checked_out, called = work
    unit = new()
    unit.connection().execute(insert(Entry.__table__), {"name": "dropped"})
    unit.add(Entry(name="dropped-too"))
    unit.rollback()
    assert checked_out() == 0 and names() == set() and called == []
    unit.connection().execute(insert(Entry.__table__), {"name": "kept"})
    unit.commit()
    assert names() == {"kept"} and called == []  # the callback went with the rollback


def clashing(new, written):
    """A unit of work that wrote `written` by SQL, then added an entry whose name
    an earlier unit of work committed: its flush will be refused."""
    first = new()
    first.add(Entry(name="taken"))
    first.commit()
    unit = new()
    unit.connection().execute(insert(Entry.__table__), {"name": written})
    unit.add(Entry(name="taken"))
    return unit


def test_a_commit_that_fails_keeps_nothing_and_is_rolled_back_by_its_caller(work):
    new, names, checked_out, called = work
    unit = clashing(new, "other")
    with pytest.raises(IntegrityError):  # the commit's flush
        unit.commit()
    assert checked_out() == 1  # the caller ends it (Database.end_work does)
    unit.rollback()
    assert checked_out() == 0 and names() == {"taken"} and called == [1]


def test_after_a_failed_flush_nothing_is_committed_until_it_is_rolled_back(work):
    new, names, checked_out, called = work
    unit = clashing(new, "inbox-row")
    with pytest.raises(IntegrityError):
        unit.flush()  # rolls the transaction back, inbox row and all
    # carrying on as if nothing happened would commit what follows without it
    with pytest.raises(PendingRollbackError):
        unit.connection().execute(insert(Entry.__table__), {"name": "outbox-row"})
    with pytest.raises(PendingRollbackError):
        unit.commit()
    unit.rollback()
    assert names() == {"taken"} and called == [1] and checked_out() == 0


def test_objects_loaded_before_a_rollback_must_be_loaded_again(work):
    new, names, _, _ = work
    first = new()
    first.add(Entry(name="loaded"))
    first.commit()
    unit = new()
    entry = unit.get(Entry, "loaded")
    unit.rollback()
    with pytest.raises(DetachedInstanceError):
        entry.name


def test_an_orm_session_runs_its_callbacks_after_its_commit_only(work, tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/work.sqlite")
    called = []
    with Session(engine) as session:
        after_commit(session, lambda: called.append("rolled back"))
        session.add(Entry(name="rolled-back"))
        session.rollback()
        after_commit(session, lambda: called.append("closed"))
        session.add(Entry(name="closed"))
        session.flush()
        session.close()  # abandons the transaction: not a commit
        session.add(Entry(name="taken"))
        session.commit()
        assert called == []
        after_commit(session, lambda: called.append("kept"))
        session.add(Entry(name="outer"))
        with session.begin_nested():  # a savepoint released is not the commit
            session.add(Entry(name="inner"))
        with pytest.raises(IntegrityError):
            with session.begin_nested():  # a savepoint that fails leaves the outer be
                session.add(Entry(name="taken"))
        assert called == []
        session.commit()
    assert called == ["kept"]
    engine.dispose()


def test_the_orm_session_joined_to_a_unit_of_work_commits_with_it(work):
    new, names, _, called = work
    unit = new()
    entry = Entry(name="joined")
    unit.add(entry)
    joined = object_session(entry)  # what ORM code finds: not the unit of work
    after_commit(joined, lambda: called.append(2))
    joined.commit()  # joined to the unit's transaction: commits nothing by itself
    assert called == [] and names() == set()
    unit.commit()
    assert names() == {"joined"} and called == [1, 2]
