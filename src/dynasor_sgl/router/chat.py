"""Chat completions with early exit (in progress: refused with 501 until it lands)."""

from __future__ import annotations

from typing import Any

from dynasor_sgl.router.effort import EarlyExit, plan_of
from dynasor_sgl.router.errors import ApiError


async def complete(router: Any, body: dict[str, Any], plan: EarlyExit) -> Any:
    raise ApiError(501, "early exit on chat completions is not available yet", "not_implemented")


__all__ = ["complete", "plan_of"]
