"""The documentation: a short README that leads into the docs site, which builds clean."""
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
README_LINES = 200  # what it is, the two commands, a five-minute try, where to read on


def test_the_readme_stays_short_and_every_link_of_it_is_there():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= README_LINES
    for target in re.findall(r"\]\((?!https?:)([^)#]+)", readme):
        assert (ROOT / target).exists(), target


def test_the_site_builds_with_every_page_in_its_nav_and_no_broken_link(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(pathlib.Path(sys.executable).parent)) or \
        shutil.which("mkdocs")
    if mkdocs is None:
        pytest.fail("mkdocs is not installed: `make install` installs the docs extra")
    built = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path)],
                           cwd=ROOT, capture_output=True, text=True, timeout=120,
                           env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"})
    assert built.returncode == 0, built.stdout + built.stderr
    assert (tmp_path / "operating" / "stuck-order" / "index.html").exists()
