"""Statements compiled once and run on the driver's cursor: the hot path's SQL.

In the order saga's profile, each service's `Connection.execute` took 22-41% of
its CPU, and the driver's own `cursor.execute` under a tenth of that: the rest
is SQLAlchemy's work around each execution (an execution context, the cache
lookup, parameter and result objects, its events). `precompiled(statement)`
keeps what SQLAlchemy does well, writing the SQL for each dialect, each type's
bind and result conversion, its exception classes, and does the rest once per
dialect instead of once per execution.

Domain code does not change: `conn.execute(PRECOMPILED, params)` is what it was
(`Connection.execute` calls the statement's `_execute_on_connection`, as for any
of SQLAlchemy's own), in the connection's transaction (where none is begun,
SQLAlchemy's own autobegin begins it once the statement is ready to run), and a
driver's error is raised as SQLAlchemy's (an `IntegrityError` stays one; a lost
connection is invalidated). It returns `Rows`: the methods of a `CursorResult`
the code uses (`first`, `one`, `scalar_one`, `all`, iterating, `rowcount`),
rows as named tuples (`row.id`, `row._asdict()`).

Whatever this cannot do exactly as SQLAlchemy would goes to SQLAlchemy itself,
unchanged: several rows of parameters at once (psycopg2 would send each
alone), a value written into the SQL (`literal_execute`), a missing required
value (its error), a Python column default that wants the execution context,
execution options (the call's, the connection's or the engine's), a connection
with event listeners (they would not see the statement) or echo, a transaction,
savepoint or `with begin()` block that failed or ended (SQLAlchemy raises), a
connection closed or lost, a driver other than sqlite3 and psycopg2. An
expanding `IN` runs here, a form kept for each length of its lists up to
LONGEST_LISTS values in all, as SQLAlchemy itself expands it; longer lists go
to SQLAlchemy.
"""
import collections
import inspect
import keyword

from sqlalchemy.exc import MultipleResultsFound, NoResultFound, ResourceClosedError

__all__ = ["precompiled", "Precompiled", "Rows"]

_UNSUPPORTED = object()  # a form SQLAlchemy runs itself
# the drivers whose parameters and cursors this was checked against
DRIVERS = {("sqlite", "pysqlite"), ("postgresql", "psycopg2")}
# an expanding IN's lists, all told, beyond which its forms are not kept: one is
# kept for each length (the outbox relay marks up to 100 rows at once)
LONGEST_LISTS = 100


def precompiled(statement):
    return Precompiled(statement)


class Precompiled:
    """`statement`, compiled once per dialect and set of parameter names."""

    def __init__(self, statement):
        self.statement = statement
        # (dialect, driver, paramstyle, server version, parameter names) -> _Form,
        # _Expanding or _UNSUPPORTED. Engines of one driver and server are taken to
        # share their dialect's options (mesh.data.db.make_engine sets none).
        self._forms = {}

    def __repr__(self):
        return f"precompiled({self.statement!r})"

    def _execute_on_connection(self, connection, distilled_params, execution_options):
        if len(distilled_params) == 1 and not execution_options and _runs_as_is(connection):
            params, dialect = distilled_params[0], connection.dialect
            key = (dialect.name, dialect.driver, dialect.paramstyle, dialect.server_version_info,
                   frozenset(params))
            form = self._forms.get(key)
            if form is None:
                form = self._forms[key] = _Form.of(self.statement, dialect, params)
            if form is not _UNSUPPORTED:
                try:
                    prepared = form.prepare(params)
                except Exception as exc:  # a value its type refuses: SQLAlchemy's StatementError
                    connection._handle_dbapi_exception(exc, form.sql, params, None, None)
                if prepared is not None:
                    if connection._transaction is None:
                        connection._autobegin()  # SQLAlchemy's own, where it would begin
                    if connection.in_transaction():
                        return prepared[0].run(connection, prepared[1])
        return connection.execute(self.statement, distilled_params or None,
                                  execution_options=execution_options)


def _runs_as_is(connection):
    """Whether SQLAlchemy would run a statement on `connection` as it is: open and
    not invalidated; its transaction, its savepoint and the `with begin()` block
    around it, where there are any, still active (else SQLAlchemy raises: it
    does so itself); no options or listeners that would change or watch what runs."""
    transaction, savepoint = connection._transaction, connection._nested_transaction
    block = connection._trans_context_manager
    return connection._dbapi_connection is not None \
        and (transaction is None or transaction.is_active) \
        and (savepoint is None or savepoint.is_active) \
        and (block is None or block._transaction_is_active()) \
        and not (connection._execution_options or connection._has_events
                 or connection.engine._has_events or connection.dialect._has_events
                 or connection._echo)


class _Form:
    """One compiled form: its SQL, where each parameter's value comes from, and
    how its results are read."""

    @classmethod
    def of(cls, statement, dialect, params):
        """The form for `params`' names, an `_Expanding` that makes one for each
        length of its lists, or _UNSUPPORTED."""
        if (dialect.name, dialect.driver) not in DRIVERS:
            return _UNSUPPORTED
        compiled = statement.compile(dialect=dialect, column_keys=sorted(params))
        binds = list(compiled.bind_names)
        if compiled.escaped_bind_names or any(
                bind.isoutparam or bind.callable is not None or bind.literal_execute
                for bind in binds):
            return _UNSUPPORTED
        defaults = {}
        for column, default in [(c, c.default) for c in compiled.insert_prefetch] + \
                               [(c, c.onupdate) for c in compiled.update_prefetch]:
            made = _made_without_context(default)
            if made is None:
                return _UNSUPPORTED
            defaults[column.key] = made
        columns = _result_columns(statement)
        if columns is _UNSUPPORTED:
            return _UNSUPPORTED
        expanding = sorted({bind.key for bind in binds if bind.expanding})
        if expanding:
            return _Expanding(compiled, dialect, defaults, columns, expanding)
        if dialect.paramstyle == "qmark":
            names = list(compiled.positiontup)
        else:
            names = sorted(set(compiled.bind_names.values()))
        return cls(compiled.string, compiled, dialect, names, defaults, columns, {})

    def __init__(self, sql, compiled, dialect, names, defaults, columns, expanded):
        """`expanded`: `{name in the SQL: (name it was expanded from, index)}`."""
        self.sql, self.positional, self.names = sql, dialect.paramstyle == "qmark", names
        self.slots = []  # (key, required, value or default's maker, processor, index)
        for name in names:
            bind_name, index = expanded.get(name, (name, None))
            bind = compiled.binds[bind_name]
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if name in defaults:
                self.slots.append((None, None, defaults[name], processor, None))
            else:
                self.slots.append((bind.key, bind.required, bind.value, processor, index))
        self.columns, self.dialect = columns, dialect
        self.Row = collections.namedtuple("Row", [key for key, _ in columns]) if columns else None
        self.readers = None  # each column's result processor, known at the first result

    def prepare(self, params):
        """`(form, the driver's parameters)`; None when a required value is
        missing (then SQLAlchemy raises its own error)."""
        values = []
        for key, required, value, processor, index in self.slots:
            if key is None:
                value = value()
            elif key in params:
                value = params[key] if index is None else params[key][index]
            elif required:
                return None
            if processor is not None:
                value = processor(value)
            values.append(value)
        return self, (tuple(values) if self.positional else dict(zip(self.names, values)))

    def run(self, connection, values):
        cursor = None
        try:
            cursor = connection.connection.dbapi_connection.cursor()
            cursor.execute(self.sql, values)
            rows = cursor.fetchall() if self.Row is not None else None
            rowcount = cursor.rowcount
            cursor.close()
        except BaseException as exc:
            # SQLAlchemy's own handling: its exception class, the connection
            # invalidated when it was lost (or a green thread killed mid-statement)
            connection._handle_dbapi_exception(exc, self.sql, values, cursor, None)
        if rows is not None:
            rows = self._read(rows, cursor.description)
        return Rows(rows, rowcount)

    def _read(self, rows, description):
        if self.readers is None:
            self.readers = [
                type_.dialect_impl(self.dialect).result_processor(self.dialect, described[1])
                for (_, type_), described in zip(self.columns, description)]
        readers, Row = self.readers, self.Row
        if not any(readers):
            return [Row._make(row) for row in rows]
        return [Row._make([value if read is None else read(value)
                           for read, value in zip(readers, row)]) for row in rows]


class _Expanding:
    """The forms of a statement with expanding parameters (`IN` a list): one for
    each length of its lists, written by SQLAlchemy's own expansion."""

    def __init__(self, compiled, dialect, defaults, columns, keys):
        self.compiled, self.dialect, self.defaults, self.columns = \
            compiled, dialect, defaults, columns
        self.sql = compiled.string
        self.keys = keys
        self._forms = {}

    def prepare(self, params):
        try:
            lengths = tuple(len(params[key]) for key in self.keys)
        except (KeyError, TypeError):
            return None  # SQLAlchemy's error for a missing or scalar list
        form = self._forms.get(lengths)
        if form is None:
            if sum(lengths) > LONGEST_LISTS:
                return None  # SQLAlchemy's, expanded anew: a form kept for each would grow
            if any(isinstance(value, (tuple, list)) for key in self.keys
                   for value in params[key]):
                return None  # a tuple IN: SQLAlchemy's alone
            try:
                state = self.compiled.construct_expanded_state(params)
            except Exception:
                return None  # SQLAlchemy raises it again, as its own
            expanded = {name: (bind_name, index)
                        for bind_name, names in state.parameter_expansion.items()
                        for index, name in enumerate(names)}
            names = list(state.positiontup) if self.dialect.paramstyle == "qmark" \
                else sorted(state.parameters)
            form = self._forms[lengths] = _Form(
                state.statement, self.compiled, self.dialect, names, self.defaults,
                self.columns, expanded)
        return form.prepare(params)


def _made_without_context(default):
    """A function making a Python column default's value, or None when it needs
    the execution context (or is not a plain value or function)."""
    if default is None:
        return None
    if default.is_scalar:
        return lambda value=default.arg: value
    if default.is_callable:
        made = getattr(default.arg, "__wrapped__", None)  # SQLAlchemy's wrap of a 0-arg fn
        try:
            takes_nothing = callable(made) and all(
                parameter.default is not parameter.empty
                or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
                for parameter in inspect.signature(made).parameters.values())
        except (TypeError, ValueError):  # no signature to read
            takes_nothing = False
        return made if takes_nothing else None
    return None


def _result_columns(statement):
    """`[(key, type)]` of the rows it returns, [] for none."""
    columns = getattr(statement, "selected_columns", None)
    if columns is None and getattr(statement, "_returning", ()):
        columns = statement.exported_columns
    if not columns:
        return []
    keyed = [(column.key, column.type) for column in columns]
    keys = [key for key, _ in keyed]
    if len(set(keys)) != len(keys) or any(
            not key or not key.isidentifier() or key.startswith("_") or keyword.iskeyword(key)
            for key in keys):
        return _UNSUPPORTED
    return keyed


class Rows:
    """What a precompiled statement returns: the part of a `CursorResult` in use."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows, rowcount):
        self._rows, self.rowcount = rows, rowcount

    def all(self):
        """The rows not yet taken; the result is then empty, as a consumed one."""
        if self._rows is None:
            raise ResourceClosedError("This result object does not return rows.")
        rows, self._rows = self._rows, []
        return rows

    def __iter__(self):
        return iter(self.all())

    def first(self):
        rows = self.all()
        return rows[0] if rows else None

    def one_or_none(self):
        rows = self.all()
        if len(rows) > 1:
            raise MultipleResultsFound("Multiple rows were found when one or none was required")
        return rows[0] if rows else None

    def one(self):
        row = self.one_or_none()
        if row is None:
            raise NoResultFound("No row was found when one was required")
        return row

    def scalar(self):
        row = self.first()
        return None if row is None else row[0]

    def scalar_one(self):
        return self.one()[0]

    def scalar_one_or_none(self):
        row = self.one_or_none()
        return None if row is None else row[0]
