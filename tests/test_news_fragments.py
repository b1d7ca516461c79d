"""``doc/news``: every news fragment is named ``<issue>.<type>[.<n>].rst`` with a type towncrier knows."""

from __future__ import annotations

import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_fragment_names_and_types() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["towncrier"]
    types = {t["directory"] for t in config["type"]}
    news = ROOT / config["directory"]
    name = re.compile(r"\A(?P<issue>[0-9]+)\.(?P<type>[a-z]+)(\.[0-9]+)?\.rst\Z")
    fragments = [p for p in news.iterdir() if p.name != "README.rst"]
    for path in fragments:
        match = name.match(path.name)
        assert match, f"{path.name}: not <issue>.<type>[.<n>].rst"
        assert match["type"] in types, f"{path.name}: type {match['type']!r} is none of {sorted(types)}"
        assert path.read_text().strip(), f"{path.name} is empty"
    assert ".. towncrier release notes start" in (ROOT / config["filename"]).read_text()
