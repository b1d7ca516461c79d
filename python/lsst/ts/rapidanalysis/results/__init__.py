"""Results that last: the results database (jobs, metrics, products)."""

from .database import *  # noqa: F403
from .writer import *  # noqa: F403
