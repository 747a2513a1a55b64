"""The one place where domain errors become gRPC status codes (server side) and back (client side).

`ErrorInterceptor` wraps every handler of a grpc.aio server: a `cleanroom.errors.CleanroomError` aborts the
call with the status its `code` names and its `public_message()` (a request problem names stage, party or
column; a `DataError` names at most the column, never a row, value or count); the full text stays in the
node's local log. Anything unexpected is logged locally and becomes INTERNAL with a generic message, so no
data can leak through an exception text. `raise_for_rpc_error` turns a received status back into the
matching domain error.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from cleanroom import errors as domain
from cleanroom.audit import bounded_text

log = logging.getLogger("cleanroom.transport")

_BY_STATUS: dict[grpc.StatusCode, type[domain.CleanroomError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: domain.InvalidInput,
    grpc.StatusCode.RESOURCE_EXHAUSTED: domain.BudgetExceeded,
    grpc.StatusCode.PERMISSION_DENIED: domain.PermissionDenied,
    grpc.StatusCode.FAILED_PRECONDITION: domain.PreconditionFailed,
    grpc.StatusCode.ABORTED: domain.ProtocolAbort,
    grpc.StatusCode.NOT_FOUND: domain.NotFound,
}


def status_for(error: domain.CleanroomError) -> grpc.StatusCode:
    """The status code an error class names (INTERNAL if it names none that exists)."""
    return getattr(grpc.StatusCode, error.code, grpc.StatusCode.INTERNAL)


class RemoteError(domain.CleanroomError):
    """A call failed with a status that has no domain error (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL...)."""

    def __init__(self, peer: str, method: str, status: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{peer}: {method} failed with {status.name}: {details}")
        self.status = status


def raise_for_rpc_error(error: grpc.RpcError, peer: str, method: str) -> None:
    """Re-raise a received gRPC error as the domain error of its status, naming the peer and method."""
    status = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    cls = _BY_STATUS.get(status)
    if cls is None:
        raise RemoteError(peer, method, status, details or "") from error
    raise cls(f"{peer}: {method} refused ({status.name}): {details}") from error


Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


def _guard(method: str, behaviour: Handler) -> Handler:
    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await behaviour(request, context)
        except grpc.aio.AbortError:
            raise
        except domain.CleanroomError as error:
            log.warning("%s refused: %s", method, bounded_text(str(error)))
            # only the public text crosses the wire, bounded: a caller's oversized claim is not echoed whole
            await context.abort(status_for(error), bounded_text(error.public_message()))
        except Exception:
            log.exception("%s failed unexpectedly", method)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method} (see the node's log)")

    return guarded


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps exceptions raised by unary-unary and stream-unary handlers to status codes."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        ser, de = handler.response_serializer, handler.request_deserializer
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _guard(method, handler.unary_unary), request_deserializer=de, response_serializer=ser
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                _guard(method, handler.stream_unary), request_deserializer=de, response_serializer=ser
            )
        return handler
