"""MkDocs hook: a page's `<!-- generated: NAME -->` line becomes what the mesh's
own definitions say (the settings' schema, the contracts, the scaffold), so the
reference cannot drift from the code. An unknown NAME fails the build."""
import re

from mesh.ops.reference import GENERATED

MARKER = re.compile(r"^<!-- generated: ([\w:./-]+) -->$", re.MULTILINE)


def on_page_markdown(markdown, page, config, files):
    def render(match):
        name = match[1]
        if name not in GENERATED:
            raise ValueError(f"{page.file.src_path}: no generated part named {name!r} "
                             f"(known: {', '.join(sorted(GENERATED))})")
        return GENERATED[name]()

    return MARKER.sub(render, markdown)
