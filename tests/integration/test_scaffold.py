"""`mesh new service NAME` in a copy of the repository: the generated service's
own tests pass at once, and so do the checks that every service is wired into
config, contracts, compose, Prometheus, Kubernetes and the AsyncAPI document."""
import os
import pathlib
import shutil
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]


def copy_of_the_repository(target):
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    for name in files:
        if name.startswith(("tests/integration/data/", "bench/")):
            continue
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target / name)


def test_a_new_service_is_wired_in_and_its_tests_pass(tmp_path):
    copy_of_the_repository(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    env = {k: v for k, v in env.items() if not k.startswith("DATABASE_URL_")}
    made = subprocess.run([sys.executable, "-m", "mesh.ops.cli", "new", "service",
                           "shipments"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    assert "services/shipments/migrations/versions/shipments_0001_own_tables.py" in \
        made.stdout
    again = subprocess.run([sys.executable, "-m", "mesh.ops.cli", "new", "service",
                            "shipments"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 1 and "exists already" in again.stderr
    tests = ["tests/unit/test_shipments_domain.py", "tests/integration/test_shipments.py",
             "tests/unit/test_deploy.py", "tests/unit/test_k8s.py",
             "tests/unit/test_asyncapi.py", "tests/unit/test_layout.py"]
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          *tests], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " 0 failed" not in run.stdout and "passed" in run.stdout
    assert "shipments" in (tmp_path / "deploy/k8s/kustomization.yaml").read_text()
