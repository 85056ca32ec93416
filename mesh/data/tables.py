"""The platform's tables, in every service's database: outbox, inbox, request keys.

Declared once here and migrated by the `mesh` Alembic branch
(`mesh/data/platform_migrations/`), which every service's history depends on; a
service's own models and migrations hold only its own tables.
"""
from sqlalchemy import Column, Index, Integer, MetaData, String, Table, Text

from mesh.data.db import UtcDateTime

__all__ = ["metadata", "outbox", "inbox", "rpc_requests"]

metadata = MetaData()

# events recorded with the change they report, until the relay has them confirmed
outbox = Table(
    "outbox", metadata,
    Column("id", Integer, primary_key=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("type", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("correlation_id", String(64)),
    Column("traceparent", String(55)),
    Column("data", Text, nullable=False),
    Column("published_at", UtcDateTime),
    # the entrypoint whose transaction recorded it (`mesh trace`: what caused what)
    Column("written_by", String(100)),
    # the relay's unsent rows (published_at NULL, oldest first), and retention's sent ones
    Index("ix_outbox_unpublished", "published_at", "id"),
)

# which handler has processed which event
inbox = Table(
    "inbox", metadata,
    Column("handler", String(200), primary_key=True),
    Column("event_id", String(36), primary_key=True),
    Column("processed_at", UtcDateTime, nullable=False),
    # retention finds the old rows by it, rather than reading the whole table
    Index("ix_inbox_processed_at", "processed_at"),
)

# the keys of RPC requests whose effect is already applied
rpc_requests = Table(
    "rpc_requests", metadata,
    Column("key", String(64), primary_key=True),
    Column("applied_at", UtcDateTime, nullable=False),
    # the request it served and its method, for `mesh trace`
    Column("request_id", String(64)),
    Column("method", String(100)),
    Index("ix_rpc_requests_applied_at", "applied_at"),  # for retention, as the inbox's
)
