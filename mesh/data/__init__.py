"""A service's own database: units of work, the platform's tables, migrations, gauges."""
__all__ = ["db", "tables", "migrations", "gauges"]
