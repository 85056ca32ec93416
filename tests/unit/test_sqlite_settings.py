"""What every connection of a SQLite engine is set to (mesh.data.db.make_engine)."""
from sqlalchemy import text

from mesh.data.db import make_engine

SETTINGS = {"journal_mode": "wal", "synchronous": 1,  # NORMAL
            "wal_autocheckpoint": 10_000, "busy_timeout": 5000, "foreign_keys": 1}


def test_every_connection_is_set_up_alike(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'settings.sqlite'}")
    try:
        with engine.connect() as first, engine.connect() as second:
            for conn in (first, second):
                assert {name: conn.scalar(text(f"PRAGMA {name}")) for name in SETTINGS} \
                    == SETTINGS
    finally:
        engine.dispose()
