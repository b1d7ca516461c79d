"""Topic wrappers: how Controllers and Remotes read and write SAL topics."""

from .base_topic import *  # noqa: F403
from .controller_command import *  # noqa: F403
from .event_telemetry import *  # noqa: F403
from .read_topic import *  # noqa: F403
from .remote_command import *  # noqa: F403
from .write_topic import *  # noqa: F403
