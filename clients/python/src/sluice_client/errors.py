"""Sluice's refusals as typed exceptions.

Sluice answers a refused command in two ways: a typed member of the mutation's result union
(``ValidationError``, ``NotFoundError``, ``ConflictError``: nothing was recorded) or a GraphQL
error whose ``extensions.code`` names the reason (``UNAUTHENTICATED``, ``FORBIDDEN``,
``STORE_UNAVAILABLE``, ...). Both become one of the classes below, carrying the code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, cast


class SluiceError(Exception):
    """Any error Sluice answered, or failing to reach it. ``code`` is Sluice's own name for it."""

    codes: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        code: str,
        message: str,
        *,
        field: str | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        #: The offending input field (e.g. ``input.tags.0.key``), when Sluice names one.
        self.field = field
        #: The GraphQL error's extensions as sent, for codes this client has no class for.
        self.extensions: Mapping[str, Any] = dict(extensions or {})


class InvalidInput(SluiceError):
    """Bad input: nothing was recorded. ``field`` names the offending input when known."""

    codes = frozenset(
        {
            "VALIDATION_ERROR",
            "BAD_USER_INPUT",
            "BAD_INPUT",
            "BAD_REQUEST",
            "GRAPHQL_VALIDATION_FAILED",
            "GRAPHQL_PARSE_FAILED",
        }
    )


class RequestTooLarge(InvalidInput):
    """The request is over one of the server's limits (body size, cost, depth, tokens)."""

    codes = frozenset({"COST_LIMIT", "PAYLOAD_TOO_LARGE"})


class NotFound(SluiceError):
    """The run (or pool) does not exist."""

    codes = frozenset({"NOT_FOUND"})


class Conflict(SluiceError):
    """The command is not allowed in the run's current state (e.g. finishing a QUEUED run)."""

    codes = frozenset({"CONFLICT"})


class Unauthorized(SluiceError):
    """No token, or a token the server does not know."""

    codes = frozenset({"UNAUTHENTICATED"})


class Forbidden(SluiceError):
    """The token's role may not do this (viewer < worker < admin), or the site is refused."""

    codes = frozenset({"FORBIDDEN"})


class StoreUnavailable(SluiceError):
    """Sluice could not reach its event store: nothing was recorded, try again."""

    codes = frozenset({"STORE_UNAVAILABLE"})


class TooManySubscriptions(SluiceError):
    """The token holds as many streams as the server allows."""

    codes = frozenset({"TOO_MANY_SUBSCRIPTIONS"})


class SubscriberBehind(SluiceError):
    """A stream fell too far behind; ``resume_after`` is where to resume from."""

    codes = frozenset({"SUBSCRIBER_BEHIND"})

    @property
    def resume_after(self) -> str | None:
        value = self.extensions.get("resumeAfter")
        return value if isinstance(value, str) else None


class SluiceConnectionError(SluiceError):
    """The server could not be reached, or the connection broke before an answer."""

    codes = frozenset({"CONNECTION_ERROR"})

    def __init__(self, message: str) -> None:
        super().__init__("CONNECTION_ERROR", message)


class SluiceTimeout(SluiceError):
    """Waiting (for an answer or for a slot) took longer than allowed."""

    codes = frozenset({"TIMEOUT"})

    def __init__(self, message: str) -> None:
        super().__init__("TIMEOUT", message)


_CLASSES: tuple[type[SluiceError], ...] = (
    RequestTooLarge,
    InvalidInput,
    NotFound,
    Conflict,
    Unauthorized,
    Forbidden,
    StoreUnavailable,
    TooManySubscriptions,
    SubscriberBehind,
)

#: The result union members Sluice answers a refused mutation with, and their codes.
UNION_CODES: Mapping[str, str] = {
    "ValidationError": "VALIDATION_ERROR",
    "NotFoundError": "NOT_FOUND",
    "ConflictError": "CONFLICT",
}


def error_for(
    code: str, message: str, *, field: str | None = None, extensions: Mapping[str, Any] | None = None
) -> SluiceError:
    """The exception for one of Sluice's codes; a plain SluiceError for a code with no class."""
    for cls in _CLASSES:
        if code in cls.codes:
            return cls(code, message, field=field, extensions=extensions)
    return SluiceError(code, message, field=field, extensions=extensions)


def error_from_graphql(errors: Sequence[Mapping[str, Any]], *, http_status: int | None = None) -> SluiceError:
    """The first GraphQL error of an answer as an exception (the others are in its message)."""
    first: Mapping[str, Any] = errors[0] if errors else {}
    extensions_value: Any = first.get("extensions")
    extensions: Mapping[str, Any] = (
        cast(Mapping[str, Any], extensions_value) if isinstance(extensions_value, Mapping) else {}
    )
    code = extensions.get("code")
    if not isinstance(code, str):
        code = _code_for_status(http_status)
    messages = [str(error.get("message", "")) for error in errors] or ["error without a message"]
    field = extensions.get("field")
    return error_for(
        code,
        "; ".join(messages),
        field=field if isinstance(field, str) else None,
        extensions=extensions,
    )


def error_from_union(member: Mapping[str, Any]) -> SluiceError:
    """A result union's error member (``ValidationError``, ``NotFoundError``, ``ConflictError``)."""
    typename = str(member.get("__typename", ""))
    code = UNION_CODES.get(typename, typename.upper() or "ERROR")
    field = member.get("field")
    return error_for(
        code, str(member.get("message", typename)), field=field if isinstance(field, str) else None
    )


def _code_for_status(status: int | None) -> str:
    if status == 401:
        return "UNAUTHENTICATED"
    if status == 403:
        return "FORBIDDEN"
    if status == 413:
        return "PAYLOAD_TOO_LARGE"
    if status is not None and 400 <= status < 500:
        return "BAD_REQUEST"
    return "INTERNAL_SERVER_ERROR"
