"""Names on the wire, shared by the router and its clients: one copy of each (and the one shape
of a certaindex reading).

Knows nothing else; every module that speaks to or for the router imports these from here.
"""

from __future__ import annotations

from collections.abc import Mapping

# The header that names the branch of a program's request (HTTP headers are case-insensitive;
# ASGI hands them over in lower case).
BRANCH_HEADER = "X-Dynasor-Branch"
# The environment variable that holds the router's API key, for the server and its clients.
API_KEY_ENV = "DYNASOR_SGL_API_KEY"
# The separator in request ids: `<program>::<branch>::<n>`.
RID_SEP = "::"
# The port `launch` serves the router on by default, and where `run`, `eval` and the
# frontend find that router.
DEFAULT_PORT = 30000
DEFAULT_ROUTER_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
# A certaindex reading (`/programs`' and a program result's `certaindex` list) names the knob
# units used when it was read "used", as every other part does; for one release each reading
# also carries them under the old name "step" (deprecated: a "step" is a reasoning line).
UNITS_KEY = "used"
DEPRECATED_UNITS_KEY = "step"
UNITS_KEYS = (UNITS_KEY, DEPRECATED_UNITS_KEY)  # in a reading, every other key is a signal


def reading(used: int, values: Mapping[str, float]) -> dict[str, float]:
    """A certaindex reading as shown: the units under both names, then the signals."""
    return {UNITS_KEY: used, DEPRECATED_UNITS_KEY: used, **values}
