"""The parts of the docs that the code writes (see docs/_hooks/generated.py): each
entry of GENERATED renders one `<!-- generated: NAME -->` marker as Markdown."""
from mesh.core.settings_reference import configuration_table

__all__ = ["GENERATED"]

# `mesh new service shipping`'s files, for the tutorial: marker → (path, template)
SCAFFOLD = {"contract": ("contracts/{}.py", "CONTRACT"),
            "models": ("services/{}/models.py", "MODELS"),
            "domain": ("services/{}/domain.py", "DOMAIN"),
            "service": ("services/{}/service.py", "SERVICE"),
            "migrations-env": ("services/{}/migrations/env.py", "ENV"),
            "unit-test": ("tests/unit/test_{}_domain.py", "UNIT_TEST"),
            "integration-test": ("tests/integration/test_{}.py", "INTEGRATION_TEST")}


def scaffold_file(part, name="shipping"):
    """The file `mesh new service NAME` writes for `part`, as a titled Python block."""
    from mesh.ops import scaffold

    path, template = SCAFFOLD[part]
    text = scaffold._render(getattr(scaffold, template), name)  # what it writes
    return f'```python title="{path.format(name)}"\n{text.rstrip()}\n```'


def events_reference():
    from mesh.core.logs import quiet_eventlet_deprecation

    quiet_eventlet_deprecation()  # nameko imports eventlet: no notice in the build's log
    from mesh.runtime.asyncapi import events_reference as reference
    return reference()


GENERATED = {"configuration": configuration_table, "events": events_reference,
             **{f"scaffold:{part}": (lambda part=part: scaffold_file(part))
                for part in SCAFFOLD}}
