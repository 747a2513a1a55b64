"""Domain errors shared by the core, the party node and the coordinator.

Each error names the gRPC status code the transport layer maps it to (as a plain string, so the core never
imports grpc). Messages must say what was wrong and where: the file, column, row, party or stage.
"""

from __future__ import annotations


class CleanroomError(Exception):
    """Base class; `code` is the name of a grpc.StatusCode member."""

    code = "INTERNAL"

    def public_message(self) -> str:
        """The text that may cross the wire. Errors about a request name what was wrong with it; errors
        built from data (`DataError`) override this so no value, row or count ever leaves the node."""
        return str(self)


class InvalidInput(CleanroomError):
    code = "INVALID_ARGUMENT"


class SchemaError(InvalidInput):
    """The schema file itself, or data that does not fit it structurally (missing column, bad type)."""


class DataError(InvalidInput):
    """A data value rejected by the schema's policy; names source, column, row and value (locally only).

    Over the wire only `public_message()` travels: the column name, never the row, value or a count.
    """

    def __init__(self, message: str, column: str | None = None) -> None:
        super().__init__(message)
        self.column = column

    def public_message(self) -> str:
        where = f" in column {self.column!r}" if self.column else ""
        return f"data do not match the schema{where}; the details are in the party's local log"


class BudgetExceeded(CleanroomError):
    code = "RESOURCE_EXHAUSTED"


class PermissionDenied(CleanroomError):
    code = "PERMISSION_DENIED"


class PreconditionFailed(CleanroomError):
    code = "FAILED_PRECONDITION"


class ProtocolAbort(CleanroomError):
    """Secure aggregation aborted; the message names the stage and the party at fault."""

    code = "ABORTED"


class NotFound(CleanroomError):
    code = "NOT_FOUND"
