"""The README's "Five minutes with it", run as a newcomer runs it: its commands word
for word, against a mesh started with the admin its first command names (on this
test's own port, vhost and data directory)."""
import json
import re
import shutil
import subprocess
import time

from tests.e2e.conftest import BIN, REPO, RunningMesh

README = REPO / "README.md"


def blocks(section):
    """The ```sh blocks of a README section, in order."""
    part = README.read_text().split(f"\n## {section}\n")[1].split("\n## ")[0]
    return re.findall(r"```sh\n(.*?)```", part, re.DOTALL)


def objects(text):
    """The JSON objects curl printed one after the other (with no newline between)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while at < len(text.rstrip()):
        value, end = decoder.raw_decode(text, at)
        found.append(value)
        at = end + len(text[end:]) - len(text[end:].lstrip())
    return found


def bash(script, env):
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_readmes_five_minutes_work_as_written(mesh_env):
    start, order, look = blocks("Five minutes with it")
    admin = re.search(r"MESH_ADMIN_EMAIL=(\S+) MESH_ADMIN_PASSWORD='([^']+)' make run", start)
    assert admin, start
    env = mesh_env(MESH_ADMIN_EMAIL=admin[1], MESH_ADMIN_PASSWORD=admin[2])
    env["PATH"] = f"{BIN}:{env['PATH']}"
    mesh = RunningMesh(env)
    try:
        mesh.wait_for("ready: the gateway is serving on", timeout=60)
        # accounts makes the admin just after it starts: the README's reader has
        # typed a few commands by then; this test waits until the admin can log in
        mesh.http.token(admin[1], admin[2])
        assert shutil.which("jq", path=env["PATH"]), \
            "the README's commands need jq: .ci/ensure-services installs it"
        assert "http://127.0.0.1:8000" in order
        placed = bash(order.replace("http://127.0.0.1:8000", mesh.base), env)
        assert placed.returncode == 0, placed.stderr + mesh.story()
        # the last command shows the order (its comment says what it holds); on a
        # busy machine the saga may need more than the second, and one asks again
        shown, deadline = objects(placed.stdout)[-1], time.time() + 10
        customer = re.search(r'"email": "([^"]+)", "password": "([^"]+)", "name"', order)
        while shown["status"] != "confirmed" and time.time() < deadline:
            time.sleep(0.5)
            shown = mesh.http("GET", "/api/v1/orders/1",
                              mesh.http.token(customer[1], customer[2])).json()
        assert shown["status"] == "confirmed", shown
        assert '"status": "confirmed"' in order.strip().splitlines()[-1]

        for line in look.strip().splitlines():
            command = line.split("#")[0].strip()
            if command.endswith("mesh shell"):
                # interactive: what its comment says to type, fed on stdin
                typed = line.split("#", 1)[1].strip()
                ran = subprocess.run([str(BIN / "mesh"), "shell"], cwd=REPO, env=env,
                                     input=f"print({typed})\n", capture_output=True,
                                     text=True, timeout=120)
                assert ran.returncode == 0 and "'confirmed'" in ran.stdout, ran.stdout + ran.stderr
                continue
            ran = bash(command, env)
            assert ran.returncode == 0, f"{command}: {ran.stdout}{ran.stderr}"
            if "mesh trace" in command:
                assert "settled: order 1 confirmed" in ran.stdout, ran.stdout
            if "get_product" in command:
                assert '"sku": "MUG-1"' in ran.stdout or '"MUG-1"' in ran.stdout, ran.stdout
    finally:
        mesh.kill()
