"""Schemathesis against the running gateway: every route, with and without a token.

No answer may be a 5xx, and every answer must match the OpenAPI document. A
third of the bodies carry a lone surrogate or a NUL in every string (fuzz_hooks.py).
`positive_data_acceptance` is left out: an order may not name a product twice,
a rule across list items that OpenAPI cannot state, so a schema-valid body can
rightly get 422.
"""
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, BIN

EXAMPLES = 50
HOOKS = Path(__file__).with_name("fuzz_hooks.py")  # lone surrogates and NULs too


@pytest.fixture(scope="module")
def mesh(mesh_env):
    from tests.e2e.conftest import RunningMesh

    # fuzzing is a flood on purpose: the limits are not what it tests
    running = RunningMesh(mesh_env(API_RATE_LIMIT="1000000/60",
                                   AUTH_RATE_LIMIT="1000000/60",
                                   AUTH_ACCOUNT_RATE_LIMIT="1000000/60",
                                   AUTH_ADDRESS_RATE_LIMIT="1000000/60"))
    running.wait_for("ready:", timeout=30)
    yield running
    running.kill()


def fuzz(mesh, workdir, *headers):
    # schemathesis keeps a cache of past failures in its working directory: one
    # per run, so no run replays another's and nothing is written into the checkout
    result = subprocess.run(
        [str(BIN / "schemathesis"), "run", f"{mesh.base}/api/v1/openapi.json",
         "--checks", "all", "--exclude-checks", "positive_data_acceptance",
         "--max-examples", str(EXAMPLES), "--phases", "examples,fuzzing",
         "--workers", "2", "--seed", "20261123", "--no-color", *headers],
        capture_output=True, text=True, timeout=900, cwd=workdir,
        env={**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)})
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    generated = int(re.search(r"(\d+) generated", result.stdout)[1])
    print(f"schemathesis: {generated} cases")
    assert generated >= 300
    return generated


def test_every_route_anonymously(mesh, tmp_path):
    fuzz(mesh, tmp_path)


def test_every_route_as_an_admin(mesh, tmp_path):
    admin = mesh.http.token(ADMIN_EMAIL, ADMIN_PASSWORD)  # waits for the admin to exist
    fuzz(mesh, tmp_path, "-H", f"Authorization: Bearer {admin}")
