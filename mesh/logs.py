"""Logging helpers referenced from config.yaml's LOGGING section."""
import logging
import warnings

__all__ = ["QuietExpectedErrors", "quiet_eventlet_deprecation"]


class QuietExpectedErrors(logging.Filter):
    """Drop the traceback of errors a contract expects (a 404 is not a bug)."""

    def filter(self, record):
        if record.levelno < logging.ERROR and str(record.msg).startswith("(expected)"):
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_eventlet_deprecation():
    """eventlet warns on import that it is in bugfix mode; nameko 2 needs it anyway."""
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
