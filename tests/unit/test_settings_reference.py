"""docs "Configuration"'s table is written from the settings' own definitions, and
refuses to leave a setting out."""
import pathlib
import re

import pytest

from mesh.core.config import Settings
from mesh.core.settings_reference import CONFIG, configuration_table, field_docs


def rows(table):
    return {re.match(r"\| `([^`]+)`", line)[1]: line.split(" | ")
            for line in table.splitlines()[2:]}


def test_every_variable_of_config_yaml_has_its_row_with_default_bounds_and_meaning():
    table = rows(configuration_table())
    read = {name for line in CONFIG.read_text().splitlines() if not line.lstrip().startswith("#")
            for name in re.findall(r"\$\{(\w+):", line)}
    families = [name.removesuffix("<NAME>") for name in table if name.endswith("<NAME>")]
    for variable in read:
        assert variable in table or any(variable.startswith(f) for f in families), variable
    assert table["GATEWAY_PORT"][1:3] == ["`8000`", "integer from 1 to 65,535"]
    assert table["QUEUE_TYPE"][2] == "`classic` or `quorum`"
    assert table["INBOX_RETENTION_SECONDS"][1] == "`604800` (7 days)"
    assert table["WORKERS_<NAME>"][1] == "`50`; accounts `10`; gateway `100`"
    assert table["RPC_RETRIES_INVENTORY"][3].startswith("`RPC_TARGETS` → `inventory` → `retries`")
    assert "`ORDERS`" in table["DATABASE_URL_<NAME>"][3]


def test_every_field_says_what_it_means():
    docs = field_docs()
    assert set(Settings._declared_fields) <= set(docs)
    assert docs["JWT_TTL_SECONDS"] == "token lifetime"


@pytest.mark.parametrize("change, refused", [
    ("FOO_SECONDS: ${FOO_SECONDS:1}\n", "FOO_SECONDS"),  # read, but defined nowhere
    ("DROP JWT_TTL_SECONDS", "never sets JWT_TTL_SECONDS"),  # defined, but never set
])
def test_a_setting_left_undocumented_fails_the_build(tmp_path, change, refused):
    text = CONFIG.read_text()
    if change.startswith("DROP "):
        name = change.split()[1]
        text = "\n".join(line for line in text.splitlines() if not line.startswith(name))
    else:
        text += change
    config = pathlib.Path(tmp_path, "config.yaml")
    config.write_text(text)
    with pytest.raises(ValueError, match=refused):
        configuration_table(config)
