"""docs "Configuration"'s table, from the settings' own definitions: each variable
config.yaml reads (`${NAME:default}`), with its default there, what it accepts
(the `Settings` field's type and validators) and what it means (the docstring
under the field). A setting config.yaml reads but nothing defines, or a field
config.yaml never sets, fails the docs build rather than go undocumented."""
import ast
import collections
import inspect
import pathlib
import re

import yaml
from marshmallow import fields, validate

from mesh.core.config import (CALL_POLICY_DOCS, CALL_POLICY_FIELDS, OTHER_SETTINGS,
                              CallTargets, Settings, _database_url)

__all__ = ["configuration_table", "field_docs"]

CONFIG = pathlib.Path(__file__).resolve().parents[2] / "config.yaml"
VARIABLE = re.compile(r"^\$\{(\w+):(.*)\}$", re.DOTALL)
WITHOUT_VARIABLE = {"SERVICES"}  # lists code, not a value to set from outside: see below the table


def field_docs(schema=Settings):
    """Each field's docstring (the string right under it), on one line."""
    tree = ast.parse(inspect.getsource(schema))
    body = tree.body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        if isinstance(node, ast.Assign) and isinstance(after, ast.Expr) \
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
            docs[node.targets[0].id] = " ".join(after.value.value.split())
    return docs


class _RawLoader(yaml.SafeLoader):
    """config.yaml as written: `${NAME:default}` left unexpanded."""


# nameko's tags, implicit `!env_var` included once nameko has set up yaml, kept raw
for _tag in ("!raw_env_var", "!env_var"):
    _RawLoader.add_constructor(_tag, lambda loader, node: loader.construct_scalar(node))


def _variables(value, path=()):
    """(path, variable, default) for each `${NAME:default}` in `value`, in order."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _variables(item, (*path, key))
    elif isinstance(value, str) and (match := VARIABLE.match(value)):
        yield path, match[1], match[2]


def _number(value):
    return f"{value:,.0f}" if value == int(value) else f"{value:g}"


def _accepts(field):
    """What a field takes, in words, from its type and validators."""
    if getattr(field, "accepts", None):
        return field.accepts
    if isinstance(field, fields.Dict):
        return _accepts(field.value_field)
    if isinstance(field, fields.List):
        most = [check.max for check in field.validators if isinstance(check, validate.Length)]
        return (f"list of {f'at most {most[0]} ' if most else ''}"
                + _accepts(field.inner).replace("number", "numbers", 1))
    words = [{fields.Integer: "integer", fields.Float: "number",
              fields.Boolean: "`true` or `false`", fields.Email: "email address"}
             .get(type(field), "")]
    for check in field.validators:
        if isinstance(check, validate.Range):
            words.append(f"from {_number(check.min)} to {_number(check.max)}")
        elif isinstance(check, validate.OneOf):
            words = [" or ".join(f"`{choice}`" for choice in check.choices)]
        elif isinstance(check, validate.Length) and (check.min or 0) > 1:
            words.append(f"{check.min} to {check.max} characters" if check.max
                         else f"at least {check.min} characters")
        elif getattr(check, "accepts", None):
            words.append(check.accepts)
    return " ".join(word for word in words if word) or "text"


def _default(variable, default):
    if default == "":
        return "empty"
    shown = f"`{default}`"
    if variable.endswith("_SECONDS") and default.isdigit() and int(default) >= 86400 \
            and int(default) % 86400 == 0:
        days = int(default) // 86400
        shown += f" ({days} day{'s' * (days > 1)})"
    return shown


def _family(refs):
    """`WORKERS_<NAME>` for WORKERS_ACCOUNTS, WORKERS_GATEWAY ..., with its names."""
    names = [variable for _, variable, _ in refs]
    prefix = names[0][:names[0].rindex("_") + 1]
    assert all(name.startswith(prefix) for name in names), names
    return f"{prefix}<NAME>", [name[len(prefix):] for name in names]


def _family_default(refs):
    """The default most names share, then each other name's: `10`; gateway `100`."""
    shared, count = collections.Counter(default for _, _, default in refs).most_common(1)[0]
    others = [f"{path[-1]} `{default}`" for path, _, default in refs
              if default != shared or count == 1]
    return "; ".join(([_default("", shared)] if count > 1 else []) + others)


def _rows(config, docs):
    seen, grouped = set(), set()
    for key, value in config.items():
        refs = [ref for ref in _variables(value, (key,)) if ref[1] not in seen]
        seen.update(variable for _, variable, _ in refs)
        field = Settings._declared_fields.get(key)
        if field is not None and key not in docs:
            raise ValueError(f"Settings.{key} has no docstring: say what it means")
        if isinstance(field, CallTargets):
            for (_, target, name), variable, default in refs:
                kind, lowest, highest = CALL_POLICY_FIELDS[name]
                yield (f"`{variable}`", _default(variable, default),
                       f"{'integer' if kind is int else 'number'} from {_number(lowest)} "
                       f"to {_number(highest)}",
                       f"`RPC_TARGETS` → `{target}` → `{name}`: {CALL_POLICY_DOCS[name]}")
        elif field is not None and refs and refs[0][0] == (key,):
            (_, variable, default), = refs
            yield f"`{variable}`", _default(variable, default), _accepts(field), docs[key]
        elif field is not None and refs:
            pattern, names = _family(refs)
            yield (f"`{pattern}`", _family_default(refs), _accepts(field),
                   f"{docs[key]}. `<NAME>`: " + ", ".join(f"`{name}`" for name in names))
        elif field is not None:
            if key not in WITHOUT_VARIABLE:
                raise ValueError(f"config.yaml sets {key} from no variable")
        elif key.startswith("DATABASE_URL_"):
            if "DATABASE_URL_" not in grouped:
                grouped.add("DATABASE_URL_")
                names = [name.removeprefix("DATABASE_URL_") for name in config
                         if name.startswith("DATABASE_URL_")]
                yield ("`DATABASE_URL_<NAME>`", "empty", _database_url.accepts,
                       f"{OTHER_SETTINGS['DATABASE_URL_']}. `<NAME>`: "
                       + ", ".join(f"`{name}`" for name in names))
        elif refs:
            for _, variable, default in refs:
                if variable not in OTHER_SETTINGS:
                    raise ValueError(f"config.yaml reads {variable} ({key}), which no "
                                     "setting defines: add it to Settings or OTHER_SETTINGS")
                yield f"`{variable}`", _default(variable, default), "", OTHER_SETTINGS[variable]
    unset = sorted(set(Settings._declared_fields) - set(config))
    if unset:
        raise ValueError(f"config.yaml never sets {', '.join(unset)}: give each a "
                         "${NAME:default} line there")


def configuration_table(path=CONFIG):
    """The Markdown table of every variable config.yaml reads."""
    config = yaml.load(pathlib.Path(path).read_text(), Loader=_RawLoader)
    lines = ["| variable | default | accepts | meaning |", "|---|---|---|---|"]
    for row in _rows(config, field_docs()):
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines) + "\n"
