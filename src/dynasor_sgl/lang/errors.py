"""What can go wrong inside a reasoning program, as exceptions a program or its caller can catch.

A backend failure is raised on an SGLang executor thread, where the interpreter stores it in
`error_`; `dynasor_sgl.lang.read` re-raises it in the program as one of these.
"""

from __future__ import annotations

from typing import Any


class BackendError(RuntimeError):
    """A request of the program failed: the server answered an error or could not be reached.

    status: the HTTP status (0 when the server was not reached); kind: the error type from the
    JSON body (e.g. "program_stopped", "worker_unavailable"); message: its text.
    """

    def __init__(self, message: str, status: int = 0, kind: str = "error") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.kind = kind

    @classmethod
    def from_response(cls, status: int, body: Any, text: str) -> BackendError:
        """The exception for an error reply; JSON error bodies give kind and message."""
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            message, kind = str(error.get("message", text)), str(error.get("type", "error"))
        else:
            message = (
                str(body.get("detail") or body.get("message") or text)
                if isinstance(body, dict)
                else text
            )
            kind = "error"
        klass = {"program_stopped": ProgramStopped, "branch_trimmed": BranchTrimmed}.get(
            kind, BackendError
        )
        return klass(f"HTTP {status}: {message}", status, kind)


class ProgramStopped(BackendError):
    """The router refused a request because the program was stopped (by a decision or abort)."""


class BranchTrimmed(BackendError):
    """The router refused a request because its branch was trimmed."""


class BranchFailed(RuntimeError):
    """A branch (an SGLang state or fork) ended with an error; `cause` is the original error."""

    def __init__(self, branch: str, cause: BaseException) -> None:
        super().__init__(f"branch {branch} failed: {cause}")
        self.branch = branch
        self.cause = cause

    @property
    def expected(self) -> bool:
        """True when the router ended the branch on purpose (program stopped, branch trimmed)."""
        return isinstance(self.cause, ProgramStopped | BranchTrimmed)
