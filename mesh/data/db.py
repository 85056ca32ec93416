"""Each service's own database: SQLite under MESH_DATA_DIR, or DATABASE_URL_<SERVICE>."""
import collections
import datetime as dt
import hashlib
import logging
import os
import sys
import threading
import weakref

import eventlet
import nameko_sqlalchemy
from nameko.exceptions import ConfigurationError
from sqlalchemy import DateTime, Index, create_engine, event, make_url, text
from sqlalchemy.exc import PendingRollbackError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from mesh.core.config import database_setting
from mesh.data.budget import CONNECTION_SHARE, worker_pool

log = logging.getLogger(__name__)

__all__ = ["Database", "DatabaseWrapper", "UnitOfWork", "UtcDateTime", "advisory_key",
           "after_commit", "database_url", "existing_engine", "make_engine",
           "service_database", "utcnow"]


def utcnow():
    return dt.datetime.now(dt.timezone.utc)


def advisory_key(name):
    """A PostgreSQL advisory lock key for `name`: a signed 64-bit number, the
    same in every process and release."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def database_url(config, service):
    """The URL of `service`'s database: its setting, else a SQLite file of its own."""
    url = config.get(database_setting(service))
    if url:
        return url
    return "sqlite:///" + os.path.join(config["MESH_DATA_DIR"], f"{service}.sqlite")


def existing_engine(config, service):
    """An engine on `service`'s database, for an operator's reads; None while it is
    a SQLite file not made yet (opening it would create it, empty)."""
    url = database_url(config, service)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not os.path.exists(parsed.database or ""):
        return None
    return make_engine(url)


def _sqlite_pragmas(dbapi_connection, _record):
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the writer; busy_timeout rides out a
    # concurrent `mesh migrate`; foreign keys are off by default in SQLite.
    # synchronous=NORMAL under WAL: a commit is not fsynced until the next
    # checkpoint, so it survives the process dying (kill -9) but not the machine
    # losing power; FULL made the disk flush a sixth of a saga step's CPU.
    # Production data that must survive power loss belongs in PostgreSQL.
    # A checkpoint (WAL pages copied into the file, both fsynced) every 10,000
    # pages (40 MB of WAL) rather than SQLite's 1,000: the committing worker's
    # checkpoint blocks the process while it copies and syncs, and a page written
    # again and again is copied once per checkpoint; side by side a few per cent
    # more orders a second. What it costs: each checkpoint stalls the process
    # longer, if a tenth as often; the -wal file keeps its largest size (about
    # 41 MB a database); a power loss or an OS crash may lose up to that much
    # WAL (a process killed, nothing).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA wal_autocheckpoint=10000")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class _FileLock:
    """One SQLite file's lock in this process, held while a connection to it is
    out of the pool (a session's from its first statement to its commit or
    rollback; `engine.connect()`'s until it closes), for reads as for writes.

    SQLite lets one writer in at a time and makes the others wait inside the C
    library, which blocks eventlet's hub: if the writer had yielded (to the
    broker, say), it could never finish, and the whole process would stall until
    busy_timeout. Waiting on this green lock yields instead. A green thread may
    take it again (a worker's session and a read of its own); whoever checks the
    last connection in lets it go, even from another green thread: SQLAlchemy
    checks in the connection of a green thread that was killed when the garbage
    collector finds it, and a lock only its owner could release would stay held.
    The owner is a weak reference to the green thread, not its id: a dead one's
    id is handed to the next one spawned, which would walk in beside the dead
    transaction; and not the green thread itself, which holds (in its exit
    traceback) the very session whose collection lets the lock go.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._owner, self._depth = None, 0

    def acquire(self):
        me = eventlet.getcurrent()
        if self._owner is None or self._owner() is not me:
            self._lock.acquire()
            self._owner = weakref.ref(me)
        self._depth += 1

    def release(self):
        if self._depth == 0:
            raise RuntimeError("release of an SQLite file lock nobody holds")
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
            self._lock.release()


_FILE_LOCKS = collections.defaultdict(_FileLock)
_HOLDS_FILE_LOCK = "mesh_file_lock"  # in a pool record's record_info, which outlives reconnects


def _serialise_connections(engine, path):
    # pool events, not the connection's begin/commit: a listener on those sends
    # every statement through SQLAlchemy's event path, a sixth of a small transaction
    lock = _FILE_LOCKS[os.path.abspath(path)]

    def checkout(dbapi_connection, record, proxy):
        if record.record_info.get(_HOLDS_FILE_LOCK):
            return  # a checkout retried on the same record (a listener's DisconnectionError)
        lock.acquire()
        record.record_info[_HOLDS_FILE_LOCK] = True

    def checkin(dbapi_connection, record):
        # a connection that failed to open again is checked in without a checkout
        if record.record_info.pop(_HOLDS_FILE_LOCK, False):
            lock.release()

    event.listen(engine, "checkout", checkout)
    event.listen(engine, "checkin", checkin)
    event.listen(engine, "detach", checkin)  # leaves the pool without a checkin


def make_engine(url, pool=None, **options):
    """An engine tuned for its backend. `pool` (`pool_size`, `max_overflow`) sizes
    a PostgreSQL engine's connection pool (mesh.data.budget). A SQLite file's pool
    keeps `pool_size` connections and opens more when asked, never making anyone
    wait in the pool (which gives up after 30 s): a connection there takes no
    server's slot, and the file's lock lets one at a time work."""
    if url.startswith("sqlite"):
        path = make_url(url).database
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            # (an in-memory database keeps one connection a thread: no pool to size)
            options.update(pool_size=(pool or {}).get("pool_size", 5), max_overflow=-1)
        engine = create_engine(url, connect_args={"check_same_thread": False},
                               **options)
        event.listen(engine, "connect", _sqlite_pragmas)
        if path and path != ":memory:":
            _serialise_connections(engine, path)
        return engine
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        # SQLAlchemy 2.1 would pick psycopg 3; psycopg2 is the one eventlet's
        # monkey patch makes cooperative (its wait callback)
        url = parsed.set(drivername="postgresql+psycopg2")
    options.setdefault("pool_pre_ping", True)
    options.update(pool or {"pool_size": 10, "max_overflow": 20})
    return create_engine(url, **options)


AFTER_COMMIT = "mesh.data.db.after_commit"  # a session's info key: what to run once committed
_UNIT = "mesh.data.db.unit_of_work"  # a joined ORM session's info key: its UnitOfWork


def after_commit(session, callback):
    """Run `callback()` once `session` (a worker's `UnitOfWork`, the ORM session
    joined to one, or any ORM session) has committed its transaction (not a
    savepoint); never if it rolls back or is closed first. Asked twice, it runs
    once. A callback that fails is logged: the commit stands."""
    session = session.info.get(_UNIT, session)
    session.info.setdefault(AFTER_COMMIT, {})[callback] = None


def _run_after_commit(session):
    for callback in session.info.pop(AFTER_COMMIT, ()):
        try:
            callback()
        except Exception:
            log.exception("%r failed after a commit", callback)


# one listener for every ORM session (a listener per session costs a dispatcher each);
# a session joined to a UnitOfWork commits nothing itself: the unit of work runs them
@event.listens_for(Session, "after_commit")
def _orm_committed(session):
    if not session.in_nested_transaction() and _UNIT not in session.info:
        _run_after_commit(session)  # (a savepoint released is no commit)


@event.listens_for(Session, "after_transaction_end")
def _orm_ended(session, transaction):
    # the outer transaction ended (a rollback, a close): what a commit would have
    # run is forgotten; after a commit, it has run already
    if transaction.parent is None and _UNIT not in session.info:
        session.info.pop(AFTER_COMMIT, None)


class UnitOfWork:
    """A worker's one transaction (its `self.db.session`): begun by its first
    statement on one connection of the engine, and ended by the platform
    (`Database.end_work`), never by the worker.

    Domain code speaks SQL through `connection()`. What an ORM session does and
    this does not (`add`, `get`, `flush`, `scalars`, `execute`, even `new` or
    `is_active`) goes to an ORM session made on first use and joined to the same
    transaction (so it too begins it): making, beginning, committing and closing
    an ORM session for every worker cost about as much as a saga step's statements
    (measured: 122 against 68 µs for two inserts and a commit on SQLite), and most
    workers never load an object.

    `rollback()` ends the transaction and gives the connection back (on SQLite,
    the file's lock with it); the next statement begins another. Objects the ORM
    loaded before it are expired and detached: load them again. After a failed
    flush, which rolls the transaction back, every statement and the commit raise
    `PendingRollbackError` until `rollback()`, as an ORM session's would: what
    came before the failure is gone, and must not be committed without it.
    """

    def __init__(self, engine, Session):
        self.engine, self._Session = engine, Session
        self.info = {}
        self._connection = self._transaction = self._orm = None

    def connection(self):
        if self._connection is None:
            connection = self.engine.connect()
            try:
                self._transaction = connection.begin()
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        elif not self._transaction.is_active:
            raise PendingRollbackError(
                "this unit of work's transaction was rolled back (by a failed flush, or "
                "ended on its connection); call session.rollback() before going on")
        return self._connection

    @property
    def orm(self):
        """The ORM session in this unit of work's transaction."""
        if self._orm is None:
            # rollback_only: its commit() does not end our transaction; its failed
            # flush rolls it back (see connection())
            self._orm = self._Session(bind=self.connection(),
                                      join_transaction_mode="rollback_only",
                                      info={_UNIT: self})
        return self._orm

    @property
    def bind(self):
        return self.engine

    def get_bind(self, *args, **kwargs):
        """The engine, as an ORM session on it says; not the connection, which is
        this unit of work's alone."""
        return self.engine

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.orm, name)

    def commit(self):
        """Flush the ORM's objects, commit, give the connection back, then run
        what asked to run after the commit (`after_commit`). On failure nothing is
        given back: the caller rolls back."""
        if self._connection is not None:
            self.connection()  # raises if a failed flush rolled it back
            if self._orm is not None:
                self._orm.flush()
            self._transaction.commit()
            self._release()
        _run_after_commit(self)

    def rollback(self):
        self.info.pop(AFTER_COMMIT, None)
        if self._connection is not None:
            try:
                if self._orm is not None:
                    self._orm.expire_all()  # stale values read later fail, not mislead
                # (a failed flush may have rolled it back already)
                self._connection.rollback()
            finally:
                self._release()

    close = rollback

    def _release(self):
        orm, connection = self._orm, self._connection
        self._orm = self._connection = self._transaction = None
        try:
            if orm is not None:
                orm.close()
        finally:
            connection.close()


class DatabaseWrapper:
    """What a worker gets: `.session`, its unit of work (`UnitOfWork`, ended by the
    platform), and `reading()`, a plain connection for reads that change nothing."""

    def __init__(self, Session, engine):
        self.Session, self.engine = Session, engine
        self.work = None

    @property
    def session(self):
        if self.work is None:
            self.work = UnitOfWork(self.engine, self.Session)
        return self.work

    def reading(self):
        """``with self.db.reading() as conn:`` no transaction to end, nothing to
        commit. On SQLite it holds the file's lock until it closes (`_FileLock`):
        close it before calling another service, or every other worker of the file
        waits for that call."""
        return self.engine.connect()

    def close(self):
        if self.work is not None:
            self.work.close()


class Database(nameko_sqlalchemy.Database):
    """nameko-sqlalchemy's provider, its URL chosen by `database_url`; workers get
    a `DatabaseWrapper`.

    The platform ends each worker's unit of work, not the service: a worker writes
    through `self.db.session` (and records events with `self.outbox.add`) and never
    commits. `end_work` commits it, or rolls it back when the worker failed; each
    of the mesh's entrypoints calls it (through `end_work_of`) before it answers:
    an RPC before replying, an event handler before acknowledging, a timer before
    its next tick, a start hook before it is done. A service with a `Database`
    takes no other entrypoint (see `setup`).
    """

    def get_dependency(self, worker_ctx):
        db = self.dbs[worker_ctx] = DatabaseWrapper(self.Session, self.engine)
        return db

    def worker_setup(self, worker_ctx):
        # an entrypoint with a first write of its own in the worker's transaction
        # (an event handler's inbox row) makes it before the method runs
        begin_work = getattr(worker_ctx.entrypoint, "begin_work", None)
        if begin_work is not None:
            begin_work(worker_ctx, self)

    def end_work(self, worker_ctx, failed):
        """Commit the worker's session (roll it back if `failed`); a commit that
        fails is rolled back and re-raised. Ending it twice is harmless."""
        db = self.dbs.get(worker_ctx)
        session = db and db.work
        if session is None:
            return
        if failed:
            _roll_back(session)
            return
        try:
            session.commit()
        except Exception:
            _roll_back(session)
            raise

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        # the entrypoint has ended the work as it answered; this is the backstop
        try:
            self.end_work(worker_ctx, failed=exc_info is not None)
        except Exception:
            log.exception("%s: the unit of work of %s could not be committed",
                          self.container.service_name, worker_ctx.entrypoint.method_name)

    def setup(self):
        unended = sorted(f"{entrypoint.method_name} ({type(entrypoint).__name__})"
                         for entrypoint in self.container.entrypoints
                         if not getattr(entrypoint, "ENDS_UNIT_OF_WORK", False))
        if unended:
            raise ConfigurationError(
                f"{self.container.service_name}: {', '.join(unended)} would answer "
                "before its writes are committed; use the mesh's entrypoints (rpc, "
                "handle_event, timer, on_start)")
        self.db_uri = database_url(self.container.config, self.container.service_name)
        # its share of a PostgreSQL server, when `mesh serve` worked it out
        share = self.container.config.get(CONNECTION_SHARE)
        self.engine = make_engine(self.db_uri,
                                  pool=worker_pool(self.container.max_workers, share),
                                  **self.engine_options)
        self.Session = sessionmaker(bind=self.engine, class_=nameko_sqlalchemy.database.Session,
                                    **self.session_options)


def _roll_back(session):
    # the worker's own failure is what to report, not a rollback's on a dead link
    try:
        session.rollback()
    except Exception:
        log.warning("rolling back a unit of work failed", exc_info=True)


def end_work_of(worker_ctx, exc_info):
    """What an entrypoint calls as its worker's result arrives, before it answers
    (replies, acknowledges, lets its timer go on): ends the unit of work of each
    `Database` of the service (see `Database`). Returns `exc_info`, or the failure
    of a commit."""
    for dependency in worker_ctx.container.dependencies:
        if isinstance(dependency, Database):
            try:
                dependency.end_work(worker_ctx, failed=exc_info is not None)
            except Exception:
                return sys.exc_info()
    return exc_info


def service_database(container, needed_by):
    """The one `Database` dependency of `container`'s service (its engine, its metadata)."""
    databases = [d for d in container.dependencies if isinstance(d, Database)]
    if len(databases) != 1:
        raise ConfigurationError(f"{needed_by} needs the service to have exactly one "
                                 "mesh.data.db.Database")
    return databases[0]


def partial_index(name, *columns, where, **options):
    """An index over the rows for which `where` (SQL) holds, on SQLite and
    PostgreSQL alike (each dialect takes its own keyword for the condition)."""
    condition = text(where)
    return Index(name, *columns, sqlite_where=condition, postgresql_where=condition,
                 **options)


class UtcDateTime(TypeDecorator):
    """A timestamp stored as naive UTC and read back as aware UTC, on every backend."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given; use mesh.data.db.utcnow()")
            if value.tzinfo is not dt.timezone.utc:  # (utcnow()'s is)
                value = value.astimezone(dt.timezone.utc)
            value = value.replace(tzinfo=None)
        return value

    def bind_processor(self, dialect):
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        # the text SQLite's DATETIME writes ("2026-12-06 16:50:01.000123"; text
        # compares as time there), made in one call rather than its % of a dict
        def process(value):
            if value is None:
                return None
            return self.process_bind_param(value, dialect).isoformat(" ", "microseconds")
        return process

    def process_result_value(self, value, dialect):
        if value is not None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value
