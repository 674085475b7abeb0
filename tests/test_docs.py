"""The manual matches the code: every flag of every command is in docs/cli.md, every public name of
`stream` in docs/api.md, and every link between the pages leads somewhere."""
import argparse
import importlib
import os
import re

import stream
from stream.cli.main import COMMANDS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(name: str) -> str:
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


def test_every_flag_of_every_command_is_in_the_command_reference():
    cli = _read("docs/cli.md")
    missing = []
    for name, (module, _) in COMMANDS.items():
        assert f"## `lipstream {name}`" in cli, f"docs/cli.md has no section for lipstream {name}"
        parser = argparse.ArgumentParser(prog=f"lipstream {name}")
        importlib.import_module(module, "stream.cli").add_args(parser)
        for action in parser._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help") and not re.search(rf"`{re.escape(flag)}[` ]", cli):
                    missing.append(f"lipstream {name} {flag}")
    assert not missing, f"flags missing from docs/cli.md: {', '.join(missing)}"


def test_every_public_name_is_in_the_api_reference():
    api = _read("docs/api.md")
    missing = [n for n in stream.__all__ if f"stream.{n}" not in api]
    assert not missing, f"names missing from docs/api.md: {', '.join(missing)}"


def test_links_between_the_pages_lead_to_files_and_headings_that_exist():
    pages = ["README.md"] + [f"docs/{n}" for n in sorted(os.listdir(os.path.join(ROOT, "docs"))) if n.endswith(".md")]
    broken = []
    for page in pages:
        for target, anchor in re.findall(r"\]\(([^)#\s]*\.md)?(?:#([^)\s]+))?\)", _read(page)):
            if not target and not anchor:
                continue
            path = os.path.normpath(os.path.join(os.path.dirname(page), target)) if target else page
            if not os.path.isfile(os.path.join(ROOT, path)):
                broken.append(f"{page} → {target}")
                continue
            if anchor and anchor not in _anchors(_read(path)):
                broken.append(f"{page} → {target}#{anchor}")
    assert not broken, f"broken links: {', '.join(broken)}"


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors (lower case, punctuation dropped, spaces to hyphens) and explicit ids."""
    found = set(re.findall(r'<a id="([^"]+)"', text))
    for heading in re.findall(r"^#+ (.+)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found
