"""Domain errors shared by the core, the party node and the coordinator.

Each error names the gRPC status code the transport layer maps it to (as a plain string, so the core never
imports grpc). Messages must say what was wrong and where: the file, column, row, party or stage.
"""

from __future__ import annotations


class CleanroomError(Exception):
    """Base class; `code` is the name of a grpc.StatusCode member."""

    code = "INTERNAL"


class InvalidInput(CleanroomError):
    code = "INVALID_ARGUMENT"


class SchemaError(InvalidInput):
    """The schema file itself, or data that does not fit it structurally (missing column, bad type)."""


class DataError(InvalidInput):
    """A data value rejected by the schema's policy; names source, column, row and value."""


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
