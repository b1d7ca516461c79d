"""A CSC configured at ``start`` from YAML files validated against a JSON schema."""

from __future__ import annotations

import abc
import argparse
import asyncio
import copy
import os
import pathlib
import re
import subprocess
import types
from typing import Any, ClassVar

import jsonschema
import yaml

from .base_csc import BaseCsc
from .config_validator import ConfigError, DefaultingValidator
from .enums import State
from .errors import ExpectedError
from .topics import ControllerEvent

__all__ = ["ConfigurableCsc", "hierarchical_update", "read_config_files", "schema_version_of"]

#: Seconds between scans of the config dir for configurationsAvailable, in STANDBY.
READ_CONFIG_DIR_INTERVAL = 1.0
_SITE_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def hierarchical_update(base: dict, update: dict) -> dict:
    """Merge ``update`` into a copy of ``base``: nested dicts merge, anything else replaces."""
    result = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = hierarchical_update(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def schema_version_of(schema: dict) -> str:
    """The ``vN`` at the end of a schema's title (``"RapidAnalysis v1"`` → ``"v1"``)."""
    title = schema.get("title", "")
    match = re.search(r" (v\S+)$", title)
    if not match:
        raise ValueError(f"Schema title {title!r} must end with ' v<version>', e.g. 'RapidAnalysis v1'")
    return match.group(1)


def _git(config_dir: pathlib.Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=config_dir, capture_output=True, text=True, timeout=10, check=False)
    if result.returncode != 0:
        raise ExpectedError(f"git {' '.join(args)} failed in {config_dir}: {result.stderr.strip()}")
    return result.stdout


def _read_yaml(text: str, label: str) -> dict:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ExpectedError(f"Could not parse {label} as YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ExpectedError(f"{label} must hold a YAML mapping, not {type(data).__name__}")
    return data


def read_config_files(config_dir: pathlib.Path, site: str, override: str) -> tuple[dict, list[str]]:
    """Read ``_init.yaml``, ``_<site>.yaml`` (if present) and the override, merged in that order.

    Parameters
    ----------
    config_dir : `pathlib.Path`
        Directory of configuration files.
    site : `str`
        ``$LSST_SITE``.
    override : `str`
        ``[name.yaml][:gitref]``; with a git ref the files come from that commit.

    Returns
    -------
    config : `dict`
        The merged configuration, ``metadata`` dropped.
    files : `list` [`str`]
        The files actually read, in order.

    Raises
    ------
    ExpectedError
        A file is missing or malformed, or the override is not allowed.
    """
    name, _, git_ref = override.partition(":")
    name = name.strip()
    git_ref = git_ref.strip()
    if name.startswith("_"):
        raise ExpectedError(f"Override {name!r} may not start with '_' (those files are read automatically)")
    if "/" in name or "\\" in name or ".." in name:
        raise ExpectedError(f"Override {name!r} must be a file name in the config dir, not a path")

    def read(file_name: str, required: bool) -> str | None:
        if git_ref:
            if not (config_dir / file_name).exists() and not required:
                # Checked against the working tree first, then the ref decides.
                listing = _git(config_dir, "ls-tree", "--name-only", git_ref, "./")
                if file_name not in listing.split():
                    return None
            return _git(config_dir, "show", f"{git_ref}:./{file_name}")
        path = config_dir / file_name
        if not path.is_file():
            if required:
                raise ExpectedError(f"Configuration file {path} not found")
            return None
        return path.read_text()

    files: list[str] = []
    config: dict = {}
    names = [("_init.yaml", True), (f"_{site}.yaml", False)]
    if name:
        names.append((name, True))
    for file_name, required in names:
        text = read(file_name, required)
        if text is None:
            continue
        files.append(file_name)
        config = hierarchical_update(config, _read_yaml(text, f"{config_dir / file_name}"))
    config.pop("metadata", None)
    return config, files


class ConfigurableCsc(BaseCsc, abc.ABC):
    """A CSC whose ``start`` command reads and validates a configuration (salobj v7 semantics).

    Parameters
    ----------
    name : `str`
        SAL component name.
    index : `int`, optional
        SAL index.
    config_schema : `dict`
        JSON schema (draft 7); its title ends with the schema version (``"Name v1"``).
    config_dir : `str` or `pathlib.Path`, optional
        Configuration files; default `default_config_dir`.
    check_if_duplicate, initial_state, override, simulation_mode, allow_missing_callbacks
        As `BaseCsc`.
    """

    #: A package that ships its own configuration: ``<root>/<Name>/<schema version>`` is the
    #: default configuration directory when ``$<CONFIG_PKG>_DIR`` is not set (None: that is an error).
    shipped_config_root: ClassVar[pathlib.Path | None] = None

    # Generic topics of a configurable CSC (made by `Controller`; declared for type checkers).
    evt_configurationApplied: ControllerEvent
    evt_configurationsAvailable: ControllerEvent

    def __init__(
        self,
        name: str,
        index: int | None,
        config_schema: dict,
        config_dir: str | pathlib.Path | None = None,
        check_if_duplicate: bool = False,
        initial_state: State | int | None = None,
        override: str = "",
        simulation_mode: int = 0,
        allow_missing_callbacks: bool = False,
    ) -> None:
        site = os.environ.get("LSST_SITE")
        if not site:
            raise RuntimeError("Environment variable LSST_SITE is not set (e.g. summit, base, tucson, test)")
        if not _SITE_RE.match(site):
            raise RuntimeError(f"LSST_SITE={site!r} is not a plain name")
        self.site = site
        try:
            self.config_validator = DefaultingValidator(config_schema)
        except jsonschema.SchemaError as e:
            raise ValueError(f"config_schema is not a valid draft-7 schema: {e.message}") from None
        self.config_schema = config_schema
        self.schema_version = schema_version_of(config_schema)
        self.config_dir = pathlib.Path(config_dir) if config_dir is not None else self.default_config_dir(name)
        if not self.config_dir.is_dir():
            raise ValueError(f"config_dir={self.config_dir} does not exist or is not a directory")
        self.config_dir = self.config_dir.resolve()
        self._config_dir_task: asyncio.Task | None = None
        super().__init__(
            name=name,
            index=index,
            initial_state=initial_state,
            override=override,
            simulation_mode=simulation_mode,
            check_if_duplicate=check_if_duplicate,
            allow_missing_callbacks=allow_missing_callbacks,
        )

    @staticmethod
    @abc.abstractmethod
    def get_config_pkg() -> str:
        """Name of the configuration package, e.g. ``"ts_config_ocs"``."""
        raise NotImplementedError()

    @abc.abstractmethod
    async def configure(self, config: types.SimpleNamespace) -> None:
        """Apply a validated configuration; raise to refuse it (``start`` then fails)."""
        raise NotImplementedError()

    def default_config_dir(self, name: str) -> pathlib.Path:
        """``$<CONFIG_PKG>_DIR/<Name>/<schema version>``, as salobj; else the shipped configuration."""
        env_name = self.get_config_pkg().upper() + "_DIR"
        root = os.environ.get(env_name)
        if root:
            return pathlib.Path(root) / name / self.schema_version
        if self.shipped_config_root is not None:
            return self.shipped_config_root / name / self.schema_version
        raise RuntimeError(f"Environment variable {env_name} is not set and no config_dir was given")

    # -- configuration events --

    def _config_version(self) -> str:
        try:
            return _git(self.config_dir, "describe", "--all", "--long", "--always", "--dirty").strip()
        except (ExpectedError, OSError, subprocess.TimeoutExpired):
            return ""

    def list_overrides(self) -> list[str]:
        """Override files a user may name in ``start``."""
        return sorted(p.name for p in self.config_dir.glob("*.yaml") if not p.name.startswith("_"))

    def _write_configurations_available(self) -> None:
        self.evt_configurationsAvailable.set_write(
            overrides=",".join(self.list_overrides()),
            version=self._config_version(),
            url=self.config_dir.as_uri(),
            schemaVersion=self.schema_version,
        )

    async def start_phase2(self) -> None:
        """Publish configurationsAvailable and keep it current while in STANDBY."""
        self._write_configurations_available()
        self._config_dir_task = asyncio.create_task(self._watch_config_dir())
        await super().start_phase2()

    async def _watch_config_dir(self) -> None:
        while True:
            await asyncio.sleep(READ_CONFIG_DIR_INTERVAL)
            if self.summary_state == State.STANDBY:
                try:
                    # set_write publishes only if something changed
                    self._write_configurations_available()
                except Exception as e:
                    self.log.warning("Could not read config dir %s: %s", self.config_dir, e)

    async def begin_start(self, data: Any) -> None:
        """Read, merge and validate the configuration, then `configure`."""
        override = data.configurationOverride
        config_dict, files = await asyncio.get_running_loop().run_in_executor(
            None, read_config_files, self.config_dir, self.site, override
        )
        try:
            # The schema's defaults fill in what no file sets.
            config_dict = self.config_validator.validate(config_dict)
        except ConfigError as e:
            raise ExpectedError(f"Configuration {','.join(files)} is not valid: {e}") from None
        try:
            await self.configure(types.SimpleNamespace(**config_dict))
        except ExpectedError:
            raise
        except Exception as e:
            raise ExpectedError(f"configure failed: {e}") from e
        self.evt_configurationApplied.set_write(
            configurations=",".join(files),
            version=self._config_version(),
            url=self.config_dir.as_uri(),
            schemaVersion=self.schema_version,
            force_output=True,
        )
        await super().begin_start(data)

    async def close_tasks(self) -> None:
        """Stop watching the config dir."""
        if self._config_dir_task is not None:
            self._config_dir_task.cancel()
        await super().close_tasks()

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add ``--configdir``."""
        parser.add_argument("--configdir", help="Directory of configuration files (default: the shipped one).")
        super().add_arguments(parser)

    @classmethod
    def add_kwargs_from_args(cls, args: argparse.Namespace, kwargs: dict[str, Any]) -> None:
        """Pass ``--configdir`` on."""
        if args.configdir is not None:
            kwargs["config_dir"] = args.configdir
        super().add_kwargs_from_args(args, kwargs)
