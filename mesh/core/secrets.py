"""Development secrets: made once, kept in MESH_DATA_DIR, read by every process."""
import os
import secrets

__all__ = ["kept_secret"]


def kept_secret(data_dir, name):
    """The secret in `data_dir/name`, made there first (mode 0600) when missing.

    Created with a link of a complete file, so processes starting together
    agree on one secret. It is never logged.
    """
    path = os.path.join(data_dir, name)
    try:
        with open(path) as handle:
            return handle.read().strip()
    except FileNotFoundError:
        pass
    os.makedirs(data_dir, exist_ok=True)
    scratch = f"{path}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48))
    try:
        os.link(scratch, path)
    except FileExistsError:
        pass  # another process won the race; use its secret
    finally:
        os.unlink(scratch)
    with open(path) as handle:
        return handle.read().strip()
