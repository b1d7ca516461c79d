"""The Rapid Analysis CSC's configuration schema: every setting, its type and its one default.

Read by the CSC (to validate ``start``'s configuration) and by the classes that take part of it
(`AutonomousSettings`), so that a default is written in one place: the schema's ``default``.
"""

from __future__ import annotations

import pathlib
from typing import Any

import yaml

__all__ = ["CONFIG_DIR", "CONFIG_SCHEMA"]

#: The shipped configuration: ``schema/RapidAnalysis.yaml`` and ``RapidAnalysis/v1/*.yaml``.
CONFIG_DIR = pathlib.Path(__file__).parent / "config"

CONFIG_SCHEMA: dict[str, Any] = yaml.safe_load((CONFIG_DIR / "schema" / "RapidAnalysis.yaml").read_text())
