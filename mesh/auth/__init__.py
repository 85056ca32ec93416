"""Who is calling: signed access tokens and password hashes."""
__all__ = ["tokens", "passwords"]
