"""Metrics read from a service's own database when Prometheus scrapes."""
from nameko.extensions import DependencyProvider

from mesh.core.metrics import Metrics
from mesh.data.db import service_database

__all__ = ["DatabaseGauge"]


class DatabaseGauge(DependencyProvider):
    """A gauge read from the service's own database at scrape time.

    ``DatabaseGauge("mesh_saga_in_flight", "...", ("status",), query)``: each
    row of `query` is the label values followed by the value.
    """

    metrics = Metrics()

    def __init__(self, name, documentation, labels, query):
        self.name, self.documentation = name, documentation
        self.labels, self.query = tuple(labels), query

    def setup(self):
        self.database = service_database(self.container, f"DatabaseGauge {self.name}")
        self.metrics.add(self.name, self.sample)

    def sample(self):
        family = self.metrics.gauge(self.name, self.documentation, self.labels)
        with self.database.engine.connect() as conn:
            for row in conn.execute(self.query):
                family.add_metric([self.metrics.service, *map(str, row[:-1])],
                                  float(row[-1]))
        yield family

    def get_dependency(self, worker_ctx):
        return None
