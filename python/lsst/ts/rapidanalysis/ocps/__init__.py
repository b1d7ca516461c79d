"""``OCPS:101``: the front door existing observing scripts use to ask Rapid Analysis for work.

`requests` reads ``execute``'s ``config`` and says where each request goes (pure); `csc` is the
small CSC that serves the interface and routes requests to the RapidAnalysis CSCs.
"""

from .csc import *  # noqa: F403
from .requests import *  # noqa: F403
