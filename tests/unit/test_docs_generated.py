"""The docs' parts that the code writes, and the tutorial's code, held to the code.

The events page lists every event the contracts declare, with its fields and
every handler the service classes declare for it. The tutorial's scaffold
blocks are what `mesh new service shipping` writes. Its hand-written blocks,
applied to a freshly generated `shipping` at the place each one's title names,
give a service whose tests (the tutorial's own among them) pass, a handler the
events page shows, and a route the OpenAPI document has. An unknown marker
fails the build.
"""
import ast
import importlib.util
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import types

import pytest
from marshmallow import Schema, validate
from nameko.events import EventHandler

import contracts
from contracts.base import Event, Int, ServiceContract, Text
from mesh.core.config import load_config
from mesh.core.services import entrypoints_of, import_service
from mesh.ops.reference import GENERATED, SCAFFOLD
from mesh.runtime.asyncapi import asyncapi_document, events_reference

ROOT = pathlib.Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "tutorial.md"
BLOCK = re.compile(r'^```python(?: title="([^"]*)")?\n(.*?)^```$', re.M | re.S)
MARKER = re.compile(r"^<!-- generated: ([\w:./-]+) -->$", re.M)


def sections(markdown, level):
    """`{heading: text under it}` for the headings of `level` (2 for `##`)."""
    parts = re.split(rf"^{'#' * level} (.+)$", markdown, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def table_rows(text):
    return [line for line in text.splitlines() if line.startswith("| `")]


def cells(row):
    """A table row's cells, split on its unescaped `|` only."""
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]]


# ---- the events page


def test_the_events_page_has_every_declared_event_its_fields_and_handlers():
    config = load_config(str(ROOT / "config.yaml"))
    handlers = {}  # (source, event type) → {"service.method"}
    for service, path in config["SERVICES"].items():
        for method, entrypoint in entrypoints_of(import_service(path)):
            if isinstance(entrypoint, EventHandler):
                handlers.setdefault((entrypoint.source_service, entrypoint.event_type),
                                    set()).add(f"{service}.{method}")
    page = GENERATED["events"]()
    by_service = sections(page, 2)
    declared = {(c.service, e) for c in contracts.CONTRACTS.values() for e in c.events}
    shown = {(service, event) for service, text in by_service.items()
             for event in sections(text, 3)}
    assert shown == declared  # no event left out, none made up
    assert handlers and set(handlers) <= declared
    for service, contract in contracts.CONTRACTS.items():
        if not contract.events:
            assert service not in by_service
            continue
        events = sections(by_service[service], 3)
        for event_type, event in contract.events.items():
            text = events[event_type]
            assert f"`{event_type}` on `{service}.events`" in text
            assert f"**version** {event.version}" in text
            listed = set(re.findall(r"^    - `([\w.]+)` — ", text, re.M))
            assert listed == handlers.get((service, event_type), set()), event_type
            fields = {cells(row)[0].strip("`") for row in table_rows(text)}
            assert set(event.data().fields) <= fields, event_type
    envelope = sections(page, 2)["The envelope"]
    assert [cells(row)[0] for row in table_rows(envelope)] == [
        "`event_id`", "`type`", "`version`", "`occurred_at`", "`correlation_id`", "`data`"]


class Odd(Schema):
    code = Text(required=True, validate=validate.Regexp(r"^(a|b)$"))
    note = Text(load_default=None, allow_none=True)
    count = Int(required=True, validate=validate.Range(min=1, max=9))


def test_the_events_page_is_sorted_escapes_pipes_and_says_nullable():
    odd = ServiceContract("zeta", {}, [Event("z_happened", Odd, doc="a | b <i>"),
                                       Event("a_happened", Odd, version=3)])
    document = asyncapi_document({"zeta": odd, **contracts.CONTRACTS}, {})
    page = events_reference(document)
    shuffled = dict(document, channels=dict(reversed(document["channels"].items())))
    assert events_reference(shuffled) == page
    publishers = {c.service for c in contracts.CONTRACTS.values() if c.events}
    assert list(sections(page, 2)) == ["The envelope", *sorted(publishers | {"zeta"})]
    zeta = sections(sections(page, 2)["zeta"], 3)
    assert list(zeta) == ["a_happened", "z_happened"]
    assert "**version** 3" in zeta["a_happened"]
    assert "a \\| b &lt;i&gt;" in zeta["z_happened"]
    assert "- **handled by** no service" in zeta["z_happened"]
    rows = {cells(row)[0]: cells(row) for row in table_rows(zeta["z_happened"])}
    assert all(len(row) == 5 for row in rows.values())
    assert rows["`code`"][1:4] == ["string", "yes", "no"]
    assert "a&#124;b" in rows["`code`"][4] and "|" not in rows["`code`"][4]
    assert rows["`note`"][1:4] == ["string", "no", "yes"]
    assert rows["`count`"][4] == "1 to 9"


# ---- the hook


def load_hook():
    spec = importlib.util.spec_from_file_location("generated_hook",
                                                  ROOT / "docs/_hooks/generated.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    return hook


def test_an_unknown_marker_fails_the_build_and_a_known_one_is_replaced():
    hook = load_hook()
    page = types.SimpleNamespace(file=types.SimpleNamespace(src_path="tutorial.md"))
    with pytest.raises(ValueError, match="no generated part named 'scaffold:nothing'"):
        hook.on_page_markdown("text\n<!-- generated: scaffold:nothing -->\n", page,
                              None, None)
    done = hook.on_page_markdown("text\n<!-- generated: scaffold:models -->\nmore\n",
                                 page, None, None)
    assert done.startswith('text\n```python title="services/shipping/models.py"\n')
    assert done.endswith("\n```\nmore\n") and "class Item(Base):" in done


def test_every_marker_in_the_docs_is_known_and_the_tutorial_shows_the_scaffold():
    used = {name for path in (ROOT / "docs").rglob("*.md")
            for name in MARKER.findall(path.read_text())}
    assert used <= set(GENERATED), used - set(GENERATED)
    assert "events" in used
    shown = set(MARKER.findall(TUTORIAL.read_text()))
    assert {f"scaffold:{part}" for part in ("contract", "models", "domain", "service",
                                            "unit-test", "integration-test")} <= shown


# ---- the tutorial, on a service `mesh new service shipping` made


def copy_of_the_working_tree(target):
    """Tracked and new (not ignored) files, as they are now: the docs are built
    from the working tree, so the tutorial is tried on it."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split("\0")
    for name in filter(None, names):
        if name.startswith(("tests/integration/data/", "bench/", "docs/")) or \
                not (ROOT / name).is_file():
            continue
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target / name)


def run(root, *args, timeout=300):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_URL_")}
    env["PYTHONPATH"] = str(root)
    return subprocess.run([sys.executable, *args], cwd=root, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def shipping(tmp_path_factory):
    """A copy of the repository with `mesh new service shipping` run in it, and
    the files it wrote, as written."""
    root = tmp_path_factory.mktemp("repo")
    copy_of_the_working_tree(root)
    made = run(root, "-m", "mesh.ops.cli", "new", "service", "shipping", timeout=120)
    assert made.returncode == 0, made.stdout + made.stderr
    written = {path.format("shipping"): (root / path.format("shipping")).read_text()
               for path, _ in SCAFFOLD.values()}
    return root, written


def test_the_scaffold_blocks_are_what_mesh_new_writes(shipping):
    _, written = shipping
    for part in SCAFFOLD:
        ((title, body),) = BLOCK.findall(GENERATED[f"scaffold:{part}"]())
        assert body == written[title], title


def tutorial_blocks():
    """`(file, place, code)` of each titled Python block of the tutorial."""
    found = []
    for title, code in BLOCK.findall(TUTORIAL.read_text()):
        if title:
            path, _, place = title.partition(" — ")
            found.append((path, place, code))
    return found


def top_level(tree, name):
    (node,) = [n for n in tree.body if isinstance(n, ast.Assign)
               and any(getattr(t, "id", None) == name for t in n.targets)]
    return node


def insert(text, place, code):
    """`text` with `code` put at `place`, as the tutorial's titles name them."""
    tree, lines = ast.parse(text), text.splitlines(keepends=True)
    if place == "at the end":
        return text.rstrip("\n") + "\n\n\n" + code
    if place == "with the imports":
        last = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))][-1]
        at = last.end_lineno
    elif place == "above CONTRACT":
        at, code = top_level(tree, "CONTRACT").lineno - 1, code + "\n\n"
    elif place == "in CONTRACT's methods":
        (methods,) = [k.value for k in top_level(tree, "CONTRACT").value.keywords
                      if k.arg == "methods"]
        at = methods.lineno  # after `methods={`
    elif place == "in ROUTES":
        at = top_level(tree, "ROUTES").value.args[1].end_lineno - 1  # before `])`
    elif place.startswith("in ") and place[3:].isidentifier():
        # a class's new method: the class is the module's last statement
        assert isinstance(tree.body[-1], ast.ClassDef) and tree.body[-1].name == place[3:]
        return text.rstrip("\n") + "\n\n" + code
    else:
        raise AssertionError(f"the tutorial puts code {place!r}: a place this test "
                             "does not know")
    return "".join(lines[:at]) + code + "".join(lines[at:])


CHECK = """
import json
import gateway
from mesh.http.openapi import openapi_document
from mesh.runtime.asyncapi import events_reference
paths = openapi_document(gateway.ROUTES, gateway.ERRORS)["paths"]
print(json.dumps({"route": paths.get("/api/v1/shipping/items/{item_id}/rename"),
                  "events": events_reference()}))
"""


def test_the_tutorials_code_on_a_new_service_passes_its_tests(shipping):
    root, _ = shipping
    blocks = tutorial_blocks()
    places = {(path, place) for path, place, _ in blocks}
    assert ("contracts/shipping.py", "in CONTRACT's methods") in places
    assert ("services/shipping/service.py", "in ShippingService") in places
    assert ("gateway.py", "in ROUTES") in places
    changed = set()
    for path, place, code in blocks:
        target = root / path
        target.write_text(insert(target.read_text(), place, code))
        changed.add(path)
    for path in changed:
        compile((root / path).read_text(), path, "exec")  # a SyntaxError names it
    tests = run(root, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                "tests/unit/test_shipping_domain.py")
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    # the scaffold's two and the tutorial's two
    assert re.search(r"\b4 passed\b", tests.stdout), tests.stdout
    checked = run(root, "-c", CHECK, timeout=120)
    assert checked.returncode == 0, checked.stderr[-3000:]
    found = json.loads(checked.stdout.strip().splitlines()[-1])
    route = found["route"]["post"]
    assert route["operationId"] == "shipping_rename_item" and "404" in route["responses"]
    assert route["security"] == [{"bearer": []}]
    confirmed = sections(sections(found["events"], 2)["orders"], 3)["order_confirmed"]
    assert "`shipping.on_order_confirmed` — " in confirmed
    # the queue the tutorial names is the one the handler gets
    queue = re.search(r"`(evt-orders-order_confirmed--shipping\.[\w.]+)`",
                      TUTORIAL.read_text())[1]
    assert f"queue `{queue}`" in confirmed


def test_the_tutorials_other_examples_are_real_tests():
    """Its untitled blocks quote tests of the repository, word for word but for
    their comments."""
    text = TUTORIAL.read_text()
    quoted = re.findall(r"\(`(tests/[\w/]+\.py)`\):\n\n```python\n(.*?)^```$", text,
                        re.M | re.S)
    assert len(quoted) == 2
    for path, code in quoted:
        real = re.sub(r"^ *#.*\n", "", (ROOT / path).read_text(), flags=re.M)
        assert code in real, path
