import pytest
from sqlalchemy.orm import sessionmaker

from mesh.data import migrations
from mesh.data.db import database_url, make_engine
from mesh.testing import load_test_config


@pytest.fixture
def session_for(tmp_path):
    """A session on a freshly migrated SQLite file of the named service."""
    engines = []

    def make(service):
        config = load_test_config("config.yaml", MESH_DATA_DIR=tmp_path)
        migrations.upgrade(config, service)
        engine = make_engine(database_url(config, service))
        engines.append(engine)
        return sessionmaker(bind=engine)()

    yield make
    for engine in engines:
        engine.dispose()
