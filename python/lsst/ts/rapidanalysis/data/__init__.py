"""Where raws and their identities come from: instruments and detectors, data ids, the raw store."""

from .camera import *  # noqa: F403
from .data_id import *  # noqa: F403
from .raw_store import *  # noqa: F403
