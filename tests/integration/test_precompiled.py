"""A precompiled statement does what SQLAlchemy's own execution does, on the real
SQLite and PostgreSQL: the same rows written and read, the same errors, the same
transaction; and it goes to SQLAlchemy for what it does not do itself."""
import datetime as dt

import pytest
from sqlalchemy import (Boolean, Column, Integer, MetaData, String, Table, bindparam, event,
                        insert, select, text, update)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import (IntegrityError, InvalidRequestError, MultipleResultsFound,
                            NoResultFound, OperationalError, PendingRollbackError,
                            ResourceClosedError, StatementError)

from mesh.data import precompiled as module
from mesh.data.db import UtcDateTime, make_engine
from mesh.data.precompiled import precompiled

metadata = MetaData()
ITEMS = Table(
    "items", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(50), nullable=False, unique=True),
    Column("status", String(16), nullable=False, default="new"),
    Column("note", String(50)),
    Column("flag", Boolean, nullable=False, default=False),
    Column("created_at", UtcDateTime, nullable=False,
           default=lambda: dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.timezone.utc)),
    Column("updated_at", UtcDateTime, onupdate=lambda: dt.datetime(
        2027, 1, 1, tzinfo=dt.timezone.utc)),
)
VIEW = (ITEMS.c.id, ITEMS.c.name, ITEMS.c.status, ITEMS.c.note, ITEMS.c.flag,
        ITEMS.c.created_at, ITEMS.c.updated_at)
STATEMENTS = {
    "add": insert(ITEMS).returning(ITEMS.c.id),
    "add_plain": insert(ITEMS),
    "by_id": select(*VIEW).where(ITEMS.c.id == bindparam("b_id")),
    "named": select(*VIEW).where(ITEMS.c.name.in_(bindparam("b_names", expanding=True)))
    .order_by(ITEMS.c.id),
    "not_named": select(ITEMS.c.id).where(
        ITEMS.c.name.notin_(bindparam("b_skip", expanding=True))).order_by(ITEMS.c.id).limit(10),
    "move": update(ITEMS).where(ITEMS.c.id == bindparam("b_id"), ITEMS.c.status == "new"),
    "move_fixed": update(ITEMS).where(ITEMS.c.id == bindparam("b_id"))
    .values(status="done").returning(ITEMS.c.id, ITEMS.c.updated_at),
    "count": select(ITEMS.c.id).where(ITEMS.c.status == bindparam("b_status")),
}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request, tmp_path):
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_databases")("precompiled")
    else:
        url = f"sqlite:///{tmp_path}/precompiled.sqlite"
    engine = make_engine(url)
    metadata.create_all(engine)
    yield engine
    engine.dispose()


def run_both(engine, name, *params_each):
    """What SQLAlchemy's execution and the precompiled one return and leave in
    the table, each on a table of its own making."""
    results = []
    for statement in (STATEMENTS[name], precompiled(STATEMENTS[name])):
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE items RESTART IDENTITY" if conn.dialect.name ==
                              "postgresql" else "DELETE FROM items"))
            conn.execute(insert(ITEMS), [{"name": "a", "status": "new"},
                                         {"name": "b", "status": "new"},
                                         {"name": "c", "status": "done"}])
        with engine.connect() as conn:
            conn.begin()
            out = []
            for params in params_each:
                result = conn.execute(statement, params)
                out.append((result.rowcount if not result_returns_rows(name) else None,
                            [tuple(row) for row in result.all()]
                            if result_returns_rows(name) else None))
            conn.commit()
        with engine.connect() as conn:
            table = [tuple(row) for row in conn.execute(select(*VIEW).order_by(ITEMS.c.id))]
        results.append((out, table))
    return results


def result_returns_rows(name):
    return name not in ("add_plain", "move")


@pytest.mark.parametrize("name, params_each", [
    ("add", [{"name": "x"}, {"name": "y", "status": "s", "note": None, "flag": True}]),
    ("add_plain", [{"id": 9, "name": "z", "created_at": dt.datetime(
        2025, 5, 6, 7, 8, 9, 10, tzinfo=dt.timezone(dt.timedelta(hours=2)))}]),
    ("by_id", [{"b_id": 1}, {"b_id": 404}]),
    ("named", [{"b_names": ["a", "c"]}, {"b_names": ["b"]}, {"b_names": []},
               {"b_names": ["a", "b", "c"]}]),
    ("not_named", [{"b_skip": []}, {"b_skip": ["a"]}, {"b_skip": ["a", "b"]}]),
    ("move", [{"b_id": 1, "status": "done"}, {"b_id": 3, "status": "done"},
              {"b_id": 2, "status": "done", "note": "n"}]),
    ("move_fixed", [{"b_id": 2}, {"b_id": 404}]),
    ("count", [{"b_status": "done"}]),
])
def test_it_reads_and_writes_what_sqlalchemy_does(engine, name, params_each):
    by_sqlalchemy, precompiled_ = run_both(engine, name, *params_each)
    assert precompiled_ == by_sqlalchemy


def test_it_runs_on_the_driver_not_through_sqlalchemys_execution(engine, monkeypatch):
    statements = {name: precompiled(s) for name, s in STATEMENTS.items()}

    def refused(*args, **kwargs):
        raise AssertionError("ran through SQLAlchemy's execution")

    with engine.connect() as conn:
        conn.begin()
        monkeypatch.setattr(Connection, "_execute_clauseelement", refused)
        new_id = conn.execute(statements["add"], {"name": "x"}).scalar_one()
        assert conn.execute(statements["move"], {"b_id": new_id, "status": "done"}).rowcount == 1
        row = conn.execute(statements["by_id"], {"b_id": new_id}).one()
        assert conn.execute(statements["named"], {"b_names": ["x", "q"]}).all() == [row]
        assert conn.execute(statements["not_named"], {"b_skip": []}).scalar() == new_id
        monkeypatch.undo()
        conn.rollback()
    assert (row.name, row.status, row.flag, row.created_at, row.updated_at) == (
        "x", "done", False, dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.timezone.utc),
        dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc))
    assert row._asdict()["name"] == "x"
    assert all(isinstance(form, (module._Form, module._Expanding))
               for statement in statements.values() for form in statement._forms.values())


def test_a_connection_with_no_transaction_begins_one_as_sqlalchemy_would(engine, monkeypatch):
    add = precompiled(STATEMENTS["add"])

    def refused(*args, **kwargs):
        raise AssertionError("ran through SQLAlchemy's execution")

    monkeypatch.setattr(Connection, "_execute_clauseelement", refused)
    with engine.connect() as conn:
        conn.execute(add, {"name": "x"})
        assert conn.in_transaction()
        conn.commit()
    with engine.connect() as conn:
        conn.execute(add, {"name": "y"})  # closed without a commit: rolled back
    monkeypatch.undo()
    with engine.connect() as conn:
        assert conn.execute(select(ITEMS.c.name)).scalars().all() == ["x"]


def test_a_duplicate_raises_sqlalchemys_integrity_error_and_rolls_back_cleanly(engine):
    add = precompiled(STATEMENTS["add"])
    with engine.connect() as conn:
        conn.begin()
        conn.execute(add, {"name": "x"})
        with pytest.raises(IntegrityError):
            conn.execute(add, {"name": "x"})
        conn.rollback()
        conn.begin()
        conn.execute(add, {"name": "y"})
        conn.commit()
    with engine.connect() as conn:
        assert conn.execute(select(ITEMS.c.name)).scalars().all() == ["y"]


def test_what_it_does_not_do_goes_to_sqlalchemy(engine):
    add_plain, by_id = precompiled(STATEMENTS["add_plain"]), precompiled(STATEMENTS["by_id"])
    seen = []
    # no transaction begun: begun as SQLAlchemy's autobegin would, and its commit
    # keeps the row
    with engine.connect() as conn:
        conn.execute(add_plain, {"id": 1, "name": "a"})
        conn.commit()
    with engine.connect() as conn:
        conn.begin()
        # several rows at once
        conn.execute(add_plain, [{"id": 2, "name": "b"}, {"id": 3, "name": "c"}])
        # a required value missing: SQLAlchemy's error
        with pytest.raises(StatementError, match="b_id"):
            conn.execute(by_id, {})
        conn.rollback()
    with engine.connect() as conn:
        # a listener sees every statement
        event.listen(conn, "before_cursor_execute",
                     lambda *args: seen.append(args[2].split()[0]))
        conn.begin()
        assert conn.execute(by_id, {"b_id": 1}).one().name == "a"
        conn.execute(add_plain, {"id": 4, "name": "d"})
        conn.commit()
    assert seen == ["SELECT", "INSERT"]
    with engine.connect() as conn:
        assert conn.execute(select(ITEMS.c.id).order_by(ITEMS.c.id)).scalars().all() == [1, 4]


def test_its_rows_answer_as_sqlalchemys_do(engine):
    add, by_id = precompiled(STATEMENTS["add"]), precompiled(STATEMENTS["by_id"])
    count = precompiled(STATEMENTS["count"])
    with engine.connect() as conn:
        conn.begin()
        conn.execute(add, {"name": "x"})
        conn.execute(add, {"name": "y"})
        assert conn.execute(by_id, {"b_id": 404}).first() is None
        assert conn.execute(by_id, {"b_id": 404}).scalar() is None
        assert conn.execute(by_id, {"b_id": 404}).one_or_none() is None
        with pytest.raises(NoResultFound):
            conn.execute(by_id, {"b_id": 404}).one()
        with pytest.raises(MultipleResultsFound):
            conn.execute(count, {"b_status": "new"}).one()
        assert [tuple(r) for r in conn.execute(count, {"b_status": "new"})] == [(1,), (2,)]
        moved = conn.execute(precompiled(STATEMENTS["move"]), {"b_id": 1, "status": "s"})
        with pytest.raises(ResourceClosedError):
            moved.all()
        conn.rollback()


@pytest.mark.postgres
def test_a_lost_postgresql_connection_is_invalidated(postgres_databases):
    engine = make_engine(postgres_databases("precompiled"))
    metadata.create_all(engine)
    by_id = precompiled(STATEMENTS["by_id"])
    try:
        with engine.connect() as conn:
            conn.begin()
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
            with engine.connect() as killer:
                killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            with pytest.raises(OperationalError) as raised:
                conn.execute(by_id, {"b_id": 1})
            assert raised.value.connection_invalidated
            assert conn.invalidated
            with pytest.raises(PendingRollbackError):  # as SQLAlchemy says it
                conn.execute(by_id, {"b_id": 1})
        with engine.connect() as conn:  # the pool gives a working connection again
            conn.begin()
            assert conn.execute(by_id, {"b_id": 1}).first() is None
    finally:
        engine.dispose()


def test_a_value_its_type_refuses_raises_sqlalchemys_statement_error(engine):
    move = precompiled(STATEMENTS["move"])
    with engine.connect() as conn:
        conn.begin()
        with pytest.raises(StatementError, match="naive datetime"):
            conn.execute(move, {"b_id": 1, "updated_at": dt.datetime(2026, 1, 1)})
        conn.rollback()


def test_what_would_change_the_sql_or_a_default_goes_to_sqlalchemy(engine):
    """Values written into the SQL, options on the connection, a default that
    reads the execution context: each as SQLAlchemy runs it."""
    literal = precompiled(select(ITEMS.c.name).where(ITEMS.c.id.in_(
        bindparam("ids", expanding=True, literal_execute=True))).order_by(ITEMS.c.id))
    contextual = Table("contextual", MetaData(), Column("id", Integer, primary_key=True),
                       Column("label", String(20), default=lambda ctx: "ctx:%s" % (
                           ctx.get_current_parameters()["id"])))
    contextual.create(engine)
    add_plain = precompiled(insert(contextual))
    with engine.connect() as conn:
        conn.begin()
        conn.execute(insert(ITEMS), [{"name": n} for n in "abcde"])
        assert conn.execute(literal, {"ids": [1, 2]}).all() == [("a",), ("b",)]
        assert conn.execute(literal, {"ids": [4, 5]}).all() == [("d",), ("e",)]
        conn.execute(add_plain, {"id": 1})
        assert conn.execute(select(contextual.c.label)).scalar() == "ctx:1"
        conn.rollback()
    seen = []
    with engine.connect().execution_options(logging_token="mine") as conn:
        conn.begin()
        original = module._Form.run
        module._Form.run = lambda *args: seen.append(args) or original(*args)
        try:
            conn.execute(precompiled(STATEMENTS["by_id"]), {"b_id": 1})
        finally:
            module._Form.run = original
        conn.rollback()
    assert seen == []


def test_a_savepoint_ended_refuses_the_statement_as_sqlalchemy_does(engine):
    for side, statement in enumerate((STATEMENTS["add"], precompiled(STATEMENTS["add"]))):
        with engine.connect() as conn:
            with conn.begin():
                with conn.begin_nested() as savepoint:
                    savepoint.rollback()
                    with pytest.raises(InvalidRequestError, match="closed transaction"):
                        conn.execute(statement, {"name": f"refused-{side}"})
                conn.execute(statement, {"name": f"kept-{side}"})
    with engine.connect() as conn:  # each outer block committed its one row, no more
        assert conn.execute(select(ITEMS.c.name).order_by(ITEMS.c.name)).scalars().all() == [
            "kept-0", "kept-1"]


def test_a_statement_refused_before_it_ran_leaves_no_transaction_begun(engine):
    by_id = precompiled(STATEMENTS["by_id"])
    with engine.connect() as conn:
        with pytest.raises(StatementError):
            conn.execute(by_id, {})  # a required value missing
        with pytest.raises(StatementError):
            conn.execute(precompiled(STATEMENTS["move"]), {"b_id": 1, "updated_at": "soon"})
        assert not conn.in_transaction()
        with conn.begin():  # as after SQLAlchemy's own refusal
            conn.execute(precompiled(STATEMENTS["add"]), {"name": "x"})


def test_a_long_list_is_expanded_by_sqlalchemy_and_no_form_is_kept_for_it(engine):
    named = precompiled(STATEMENTS["named"])
    names = [f"n{i}" for i in range(module.LONGEST_LISTS + 1)]
    with engine.connect() as conn:
        conn.begin()
        conn.execute(insert(ITEMS), [{"name": name} for name in names[:3]])
        assert [row.name for row in conn.execute(named, {"b_names": names})] == names[:3]
        assert [row.name for row in conn.execute(named, {"b_names": names[:2]})] == names[:2]
        conn.rollback()
    (expanding,) = named._forms.values()
    assert list(expanding._forms) == [(2,)]
