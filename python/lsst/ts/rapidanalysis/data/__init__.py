"""Where raws and their identities come from: instruments and detectors, data ids, the raw store.

The names of `camera`, `data_id` and `raw_store` are importable from here; each submodule is
imported when one of its names is first asked for (PEP 562), so that importing
``data.camera`` does not pull in astropy through the raw store.
"""

from __future__ import annotations

import importlib
from typing import Any

_SUBMODULES = ("camera", "data_id", "raw_store")


def __getattr__(name: str) -> Any:
    for submodule in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{submodule}")
        if name in getattr(module, "__all__", ()):
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    names = []
    for submodule in _SUBMODULES:
        names += list(getattr(importlib.import_module(f"{__name__}.{submodule}"), "__all__", ()))
    return sorted(names)
