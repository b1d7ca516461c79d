"""Configuration defaults: written once, in the schema, and filled in by `DefaultingValidator`."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from lsst.ts.rapidanalysis.csc import CONFIG_SCHEMA
from lsst.ts.rapidanalysis.dispatch.autonomous import AutonomousSettings
from lsst.ts.rapidanalysis.sal.config_validator import ConfigError, DefaultingValidator, schema_defaults

SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {
        "n": {"type": "integer", "default": 2},
        "name": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}, "default": ["a"]},
        "inner": {
            "type": "object",
            "default": {},
            "properties": {"x": {"type": "number", "default": 1.5}, "on": {"type": "boolean", "default": False}},
            "required": ["on"],
            "additionalProperties": False,
        },
        "given_only": {"type": "object", "properties": {"y": {"type": "integer", "default": 7}}},
    },
    "required": ["n", "inner"],
    "additionalProperties": False,
}


def test_defaults_fill_what_is_not_given_at_every_level() -> None:
    validator = DefaultingValidator(SCHEMA)
    assert validator.validate({}) == {"n": 2, "tags": ["a"], "inner": {"x": 1.5, "on": False}}
    assert validator.validate(None) == validator.validate({})
    given = {"n": 5, "inner": {"on": True}, "given_only": {}}
    assert validator.validate(given) == {
        "n": 5,
        "tags": ["a"],
        "inner": {"x": 1.5, "on": True},
        "given_only": {"y": 7},
    }
    assert given == {"n": 5, "inner": {"on": True}, "given_only": {}}  # the input is not changed


def test_a_default_is_never_shared_with_the_schema() -> None:
    before = copy.deepcopy(SCHEMA)
    validator = DefaultingValidator(SCHEMA)
    first = validator.validate({})
    first["tags"].append("b")
    first["inner"]["x"] = 9.0
    assert validator.validate({}) == {"n": 2, "tags": ["a"], "inner": {"x": 1.5, "on": False}}
    assert SCHEMA == before


@pytest.mark.parametrize(
    "config, message",
    [
        ({"n": "two"}, r"^n: 'two' is not of type 'integer'"),
        ({"inner": {"x": "far"}}, r"^inner/x: 'far' is not of type 'number'"),
        ({"nn": 1}, r"^\(top level\): Additional properties are not allowed \('nn' was unexpected\)"),
        ({"inner": {"z": 1}}, r"^inner: Additional properties"),
    ],
)
def test_a_wrong_value_is_reported_where_it_is(config: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DefaultingValidator(SCHEMA).validate(config)


def test_schema_defaults_of_a_nested_object() -> None:
    assert schema_defaults(SCHEMA) == {"n": 2, "tags": ["a"], "inner": {"x": 1.5, "on": False}}
    assert schema_defaults(SCHEMA, "inner") == {"x": 1.5, "on": False}


def _settings(schema: dict, path: str = "") -> list[tuple[str, dict]]:
    """Every setting (a property that is not an object of settings) under ``schema``."""
    out = []
    for name, sub in schema.get("properties", {}).items():
        where = f"{path}{name}"
        if sub.get("type") == "object" and "properties" in sub:
            out.extend(_settings(sub, f"{where}/"))
        else:
            out.append((where, sub))
    return out


def test_every_rapid_analysis_setting_has_its_default_in_the_schema() -> None:
    missing = [where for where, sub in _settings(CONFIG_SCHEMA) if "default" not in sub]
    assert missing == []
    # So a configuration that sets nothing is valid, and complete.
    config = DefaultingValidator(CONFIG_SCHEMA).validate({})
    assert set(config) == set(CONFIG_SCHEMA["properties"])
    assert set(config["autonomous"]) == set(CONFIG_SCHEMA["properties"]["autonomous"]["properties"])


def test_autonomous_settings_take_the_schemas_defaults() -> None:
    config = DefaultingValidator(CONFIG_SCHEMA).validate({})
    assert AutonomousSettings.from_config(config["autonomous"]) == AutonomousSettings()
    assert AutonomousSettings().catchup_idle_seconds == 2.0  # the shipped value, once
    given = dict(config["autonomous"], catchup_max_images=5, science_pipelines=["sfm"])
    assert AutonomousSettings.from_config(given) == AutonomousSettings(catchup_max_images=5, science_pipelines=("sfm",))
