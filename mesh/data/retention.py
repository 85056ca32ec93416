"""Retention: platform rows are kept as long as a redelivery could need them, then pruned.

Every service with an outbox, event handlers (an inbox) or request keys runs
one `Pruner` (they bring it: nothing to write): every
PRUNE_INTERVAL_SECONDS it deletes, a batch per transaction,
- outbox rows published more than OUTBOX_RETENTION_SECONDS ago (an unpublished
  row is never touched, however old),
- inbox rows older than INBOX_RETENTION_SECONDS,
- RPC request keys older than REQUEST_KEY_RETENTION_SECONDS,
and whatever a service adds with ``name = Expiring(Rule(...))`` (orders forgets
Idempotency-Keys that way). Deleting (or clearing) an old row again is a no-op,
so replicas cannot harm each other; on PostgreSQL each batch also takes a
transaction-scoped advisory lock, and a replica that finds it held leaves that
round to the one holding it. Batches keep each write lock short, so a large
backlog never blocks the service's own writes for long.
"""
import dataclasses
import datetime as dt
import logging

import eventlet
from nameko.exceptions import ConfigurationError
from nameko.extensions import DependencyProvider, SharedExtension
from sqlalchemy import Table, delete, select, text, tuple_, update

from mesh.core.config import setting
from mesh.core.metrics import Metrics
from mesh.data.budget import PRUNER_POOL
from mesh.data.db import advisory_key, database_url, make_engine, utcnow
from mesh.data.tables import inbox, outbox, rpc_requests

__all__ = ["Rule", "PLATFORM_RULES", "prune", "Pruner", "Expiring"]

log = logging.getLogger(__name__)
BATCH = 500


@dataclasses.dataclass(frozen=True)
class Rule:
    """Rows of `table` whose `age` column is older than the `setting` (seconds)
    and that match `where` are deleted, or, with `clear`, have those columns set
    (e.g. to NULL) instead. `name` labels the metric."""

    name: str
    table: Table
    age: object
    setting: str
    where: tuple = ()
    clear: dict | None = None

    def batch(self, cutoff, size):
        """One bounded step: at most `size` rows, chosen by their primary key.

        The conditions are said again outside the choice: PostgreSQL re-checks
        only those when a row it chose was changed by another transaction while
        it waited for it (an order that moved keeps its key), and without them
        it may read the whole table to find the few rows chosen (it cannot know
        that old orders still keeping a key are few).
        """
        keys = list(self.table.primary_key.columns)
        old = (self.age < cutoff, *self.where)
        chosen = select(*keys).where(*old).limit(size)
        match = (keys[0] if len(keys) == 1 else tuple_(*keys)).in_(chosen)
        if self.clear is None:
            return delete(self.table).where(match, *old)
        return update(self.table).where(match, *old).values(self.clear)


PLATFORM_RULES = (
    Rule("outbox", outbox, outbox.c.published_at, "OUTBOX_RETENTION_SECONDS",
         # the age column is NULL until published, so `<` alone already spares
         # unsent rows; said twice because losing one would lose an event
         where=(outbox.c.published_at.is_not(None),)),
    Rule("inbox", inbox, inbox.c.processed_at, "INBOX_RETENTION_SECONDS"),
    Rule("rpc_requests", rpc_requests, rpc_requests.c.applied_at,
         "REQUEST_KEY_RETENTION_SECONDS"),
)


def prune(engine, rules, config, lock_name, now=None, size=BATCH):
    """Apply each rule, a batch per transaction, until a batch finds fewer than
    `size` rows. Returns `{rule name: rows pruned}`; on PostgreSQL a round that
    finds the advisory lock `lock_name` held by another pruner stops there."""
    now = now or utcnow()
    pruned = {}
    for rule in rules:
        cutoff = now - dt.timedelta(seconds=setting(config, rule.setting))
        statement = rule.batch(cutoff, size)
        count = 0
        while True:
            with engine.begin() as conn:
                if engine.dialect.name == "postgresql" and not conn.scalar(
                        text("SELECT pg_try_advisory_xact_lock(:key)"),
                        {"key": advisory_key(lock_name)}):
                    pruned[rule.name] = count
                    return pruned
                done = conn.execute(statement).rowcount
            count += done
            if done < size:
                break
        pruned[rule.name] = count
    return pruned


class Pruner(SharedExtension):
    """Prunes the service's database every PRUNE_INTERVAL_SECONDS (one per container)."""

    metrics = Metrics()

    def __init__(self):
        super().__init__()
        self.rules = list(PLATFORM_RULES)
        self._thread = self.engine = None

    def add(self, rule):
        if rule not in self.rules:
            self.rules.append(rule)

    def setup(self):
        config = self.container.config
        self.service = self.container.service_name
        self.url = database_url(config, self.service)
        self.interval = setting(config, "PRUNE_INTERVAL_SECONDS")
        self.pruned = self.metrics.counter(
            "mesh_pruned_rows", "Rows deleted (or cleared) by retention, by table",
            ("table",))

    def start(self):
        # an engine of its own, as the outbox relay has: its life is the thread's
        self.engine = make_engine(self.url, pool=PRUNER_POOL)
        self._thread = self.container.spawn_managed_thread(self._run, identifier="pruner")

    def stop(self):
        if self._thread is not None:
            self._thread.kill()  # a batch cut short is rolled back: nothing half done
            self._thread = None
        if self.engine is not None:  # a container stopped before it started has none
            self.engine.dispose()

    kill = stop

    def _run(self):
        while True:
            eventlet.sleep(self.interval)
            try:
                self.run_once()
            except Exception as exc:  # the database away: try again next round
                log.warning("%s: pruning old rows failed (%s); trying again in %g s",
                            self.service, exc, self.interval)

    def run_once(self, now=None):
        """One round (what the timer runs); returns `{rule name: rows pruned}`."""
        pruned = prune(self.engine, self.rules, self.container.config,
                       f"mesh prune {self.service}", now)
        for name, count in pruned.items():
            self.pruned.labels(self.service, name).inc(count)
        if any(pruned.values()):
            log.info("%s pruned %s", self.service, ", ".join(
                f"{count} {name}" for name, count in pruned.items() if count))
        return pruned


class Expiring(DependencyProvider):
    """``idempotency_keys = Expiring(domain.IDEMPOTENCY_KEYS)``: the service's own
    `Rule`, applied by its `Pruner` beside the platform's."""

    pruner = Pruner()

    def __init__(self, rule):
        self.rule = rule

    def setup(self):
        try:
            setting(self.container.config, self.rule.setting)
        except KeyError:  # at start-up, not at every round of the pruner
            raise ConfigurationError(f"retention rule {self.rule.name}: there is no "
                                     f"setting {self.rule.setting}") from None
        self.pruner.add(self.rule)

    def get_dependency(self, worker_ctx):
        return self.pruner

