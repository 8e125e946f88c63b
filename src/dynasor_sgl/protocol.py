"""Names on the wire, shared by the router and its clients: one copy of each.

Knows nothing else; every module that speaks to or for the router imports these from here.
"""

from __future__ import annotations

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
