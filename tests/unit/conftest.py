"""Unit tests use mesh.testing's fixtures (migrated_session, RecordingOutbox)."""
