"""A salobj-compatible SAL layer on Eclipse Cyclone DDS.

The names and semantics are those of ``lsst.ts.salobj`` (DDS era), so that code written for
salobj runs with only its import changed::

    from lsst.ts.rapidanalysis import sal as salobj
"""

from .base_csc import *  # noqa: F403
from .configurable_csc import *  # noqa: F403
from .controller import *  # noqa: F403
from .csc_commander import *  # noqa: F403
from .domain import *  # noqa: F403
from .enums import *  # noqa: F403
from .errors import *  # noqa: F403
from .remote import *  # noqa: F403
from .sal_info import *  # noqa: F403
from .set_summary_state import *  # noqa: F403
from .tai import *  # noqa: F403
from .test_csc import *  # noqa: F403
from .testutils import *  # noqa: F403
from .topics import *  # noqa: F403
from .xml_interface import *  # noqa: F403
