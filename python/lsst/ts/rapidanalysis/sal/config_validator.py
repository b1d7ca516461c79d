"""Validate a CSC configuration against its JSON schema, filling in the schema's defaults.

As salobj's ``DefaultingValidator``: the schema is the one place a setting's default is written.
A setting left out of every configuration file gets the ``default`` of its schema property,
in nested objects too (an object given, or defaulted, gets the defaults of its own properties).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

import jsonschema

__all__ = ["ConfigError", "DefaultingValidator", "schema_defaults"]


class ConfigError(ValueError):
    """A configuration does not follow its schema; the message lists where and why (at most 5)."""


def _fill_defaults(validator_class: type[jsonschema.protocols.Validator]) -> type[jsonschema.protocols.Validator]:
    """A validator class whose ``properties`` keyword first sets each missing property's default."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(
        validator: jsonschema.protocols.Validator, properties: Mapping[str, Any], instance: Any, schema: Any
    ) -> Iterator[jsonschema.ValidationError]:
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if isinstance(subschema, dict) and "default" in subschema:
                    # A copy: a default list or object must not be shared with the schema.
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


class DefaultingValidator:
    """Check a configuration and return it with the schema's defaults filled in.

    Parameters
    ----------
    schema : `dict`
        A draft-7 JSON schema.

    Raises
    ------
    jsonschema.SchemaError
        If the schema is not a valid draft-7 schema.
    """

    def __init__(self, schema: Mapping[str, Any]) -> None:
        jsonschema.Draft7Validator.check_schema(schema)
        self.schema = schema
        self._defaulting = _fill_defaults(jsonschema.Draft7Validator)(schema)
        self._checking = jsonschema.Draft7Validator(schema)

    def validate(self, config: Mapping[str, Any] | None) -> dict[str, Any]:
        """``config`` (not changed) with defaults filled in, once it is valid.

        Raises
        ------
        ConfigError
            If the configuration, defaults filled in, does not follow the schema.
        """
        filled = copy.deepcopy(dict(config or {}))
        # Defaults are filled in during a first pass whose errors are ignored: a value that is
        # wrong is reported by the second pass, with the defaults in place (a required setting
        # that has a default is never missing).
        for _ in self._defaulting.iter_errors(filled):
            pass
        errors = sorted(self._checking.iter_errors(filled), key=lambda e: list(e.absolute_path))
        if errors:
            raise ConfigError(
                "; ".join(
                    f"{'/'.join(str(p) for p in e.absolute_path) or '(top level)'}: {e.message}" for e in errors[:5]
                )
            )
        return filled


def schema_defaults(schema: Mapping[str, Any], *path: str) -> dict[str, Any]:
    """The defaults of the properties of the object at ``path`` in ``schema`` (no values given).

    Parameters
    ----------
    schema : `dict`
        The schema.
    *path : `str`
        Property names leading to a nested object, e.g. ``"autonomous"``.

    Returns
    -------
    defaults : `dict`
        Each property that has a default, with it (nested objects filled in too).
    """
    node: Mapping[str, Any] = schema
    for name in path:
        node = node["properties"][name]
    filled: dict[str, Any] = {}
    for _ in _fill_defaults(jsonschema.Draft7Validator)(node).iter_errors(filled):
        pass
    return filled
