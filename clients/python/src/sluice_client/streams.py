"""Subscriptions over graphql-ws (gql's websockets transport) that survive a dropped connection.

Every item Sluice streams carries its log position. A stream remembers the last one it handed
out and, when the connection drops (server restart, network, a proxy closing idle sockets),
connects again and subscribes with ``after`` = that position: Sluice then sends every item after
it before going live, so nothing is lost and nothing is repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import random
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import gql as gql_package
from gql import Client
from gql.transport import exceptions as gql_errors
from gql.transport.exceptions import (
    TransportClosed,
    TransportProtocolError,
    TransportQueryError,
    TransportServerError,
)
from gql.transport.websockets import WebsocketsTransport
from websockets.exceptions import ConnectionClosed, WebSocketException

from .errors import SluiceConnectionError, SluiceError, SubscriberBehind, Unauthorized, error_from_graphql
from .models import Json

T = TypeVar("T")

#: graphql-ws closes with 4403 when connection_init carries no known token.
_FORBIDDEN_CLOSE = 4403

# Dagster's GraphQL package holds gql below 4, so both majors are supported: gql 4 wraps socket
# failures in TransportConnectionFailed and takes a GraphQLRequest; gql 3 raises the socket's
# own errors and takes a parsed document with variable_values.
_CONNECTION_FAILED: tuple[type[BaseException], ...] = tuple(
    getattr(gql_errors, name) for name in ("TransportConnectionFailed",) if hasattr(gql_errors, name)
)
_GQL_MAJOR = int(str(getattr(gql_package, "__version__", "3")).split(".")[0])


def _subscribe(session: Any, document: str, variables: Mapping[str, Any]) -> AsyncIterator[Json]:
    if _GQL_MAJOR >= 4:
        request: Any = getattr(gql_package, "GraphQLRequest")  # noqa: B009 (absent from gql 3's typing)
        return session.subscribe(request(document, variable_values=dict(variables)))
    return session.subscribe(gql_package.gql(document), variable_values=dict(variables))


@dataclass(frozen=True)
class Reconnect:
    """How a stream reconnects: exponential backoff with jitter, and how many failures in a row end it.

    ``max_attempts``: None retries forever; a failure ends the stream with
    ``SluiceConnectionError`` after that many failed connection attempts in a row.
    """

    initial_delay: float = 0.2
    max_delay: float = 5.0
    max_attempts: int | None = None

    def delay(self, attempt: int) -> float:
        base = min(self.max_delay, self.initial_delay * (2 ** max(0, attempt - 1)))
        return base * (0.5 + random.random() / 2)


@dataclass(frozen=True)
class Subscription(Generic[T]):
    """One resumable subscription: the request for a given ``after``, and how to read each answer."""

    request: Callable[[str | None], tuple[str, Mapping[str, Any]]]
    #: An item, or None to skip the answer (a filter), from the answer's data.
    read: Callable[[Json], T | None]
    #: The log position of an answer's data, read or skipped.
    position: Callable[[Json], str]
    #: True when an item ends the stream (e.g. the run it follows has finished).
    last: Callable[[T], bool] = lambda _item: False


def websocket_url(http_url: str) -> str:
    if http_url.startswith("https://"):
        return "wss://" + http_url[len("https://") :]
    if http_url.startswith("http://"):
        return "ws://" + http_url[len("http://") :]
    return http_url


async def resumable(
    url: str,
    token: str | None,
    subscription: Subscription[T],
    after: str | None,
    reconnect: Reconnect,
    connect_timeout: float,
) -> AsyncGenerator[T, None]:
    """Items of the subscription after ``after``, reconnecting and resuming until it ends."""
    failures = 0
    while True:
        document, variables = subscription.request(after)
        transport = WebsocketsTransport(
            url=websocket_url(url),
            init_payload={"authorization": f"Bearer {token}"} if token else {},
            connect_timeout=connect_timeout,
            ack_timeout=connect_timeout,
            subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        )
        client = Client(transport=transport)
        try:
            async with client as session:
                async for data in _subscribe(session, document, variables):
                    failures = 0
                    after = subscription.position(data)
                    item = subscription.read(data)
                    if item is None:
                        continue
                    yield item
                    if subscription.last(item):
                        return
            # The server completed the stream: nothing more will come.
            return
        except TransportQueryError as error:
            sluice_error = error_from_graphql(error.errors or [{"message": str(error)}])
            if isinstance(sluice_error, SubscriberBehind) and sluice_error.resume_after is not None:
                after = sluice_error.resume_after
                continue
            raise sluice_error from error
        except (
            TransportClosed,
            *_CONNECTION_FAILED,
            TransportProtocolError,
            TransportServerError,
            WebSocketException,
            OSError,
            asyncio.TimeoutError,
        ) as error:
            refusal = _auth_refusal(error)
            if refusal is not None:
                raise refusal from error
            failures += 1
            if reconnect.max_attempts is not None and failures > reconnect.max_attempts:
                raise SluiceConnectionError(
                    f"stream from {url} lost and {reconnect.max_attempts} reconnect attempts failed: {error}"
                ) from error
            await asyncio.sleep(reconnect.delay(failures))


def _auth_refusal(error: BaseException) -> SluiceError | None:
    """A connection refused for its token, which no reconnect will mend.

    gql reports the websocket's close as a generic connection failure; the close code (4403
    from graphql-ws's connection_init check) is on the websockets exception it was raised from.
    """
    cause: BaseException | None = error
    for _ in range(5):
        if cause is None:
            break
        if (
            isinstance(cause, ConnectionClosed)
            and cause.rcvd is not None
            and cause.rcvd.code == _FORBIDDEN_CLOSE
        ):
            return Unauthorized(
                "UNAUTHENTICATED", "the server refused the stream's token (graphql-ws close 4403)"
            )
        status = _handshake_status(cause)
        if status in (401, 403):
            return Unauthorized("UNAUTHENTICATED", f"the server refused the stream: HTTP {status}")
        cause = cause.__cause__ or cause.__context__
    return None


class _End:
    """What the stream's thread puts last: why it ended (None: the stream completed)."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


def _handshake_status(error: BaseException) -> int | None:
    """The HTTP status of a refused websocket handshake (websockets' InvalidStatus, or the older
    InvalidStatusCode), else None."""
    response: Any = getattr(error, "response", None)
    status: Any = getattr(response, "status_code", None) or getattr(error, "status_code", None)
    return status if isinstance(status, int) else None


def blocking(stream: AsyncIterator[T], buffer: int = 1000) -> Generator[T, None, None]:
    """An async stream as a plain iterator, run by a thread of its own on its own event loop.

    The thread keeps the connection alive (answers pings, notices a close, reconnects) even while
    the caller is busy between items; it stops reading when ``buffer`` items wait unread, which
    is safe because the stream resumes from its last position if the server drops it meanwhile.
    Closing the iterator (``close()``, leaving a for loop, garbage collection) ends the thread.
    """
    items: queue.Queue[T | _End] = queue.Queue(maxsize=buffer)
    loop = asyncio.new_event_loop()
    # gql's cleanup of a connection that already broke reports errors nobody awaits: not ours.
    loop.set_exception_handler(lambda _loop, _context: None)
    stopping = threading.Event()

    async def pump() -> None:
        try:
            async for item in stream:
                while not stopping.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        await asyncio.sleep(0)
                if stopping.is_set():
                    return
            items.put(_End(None))
        except asyncio.CancelledError:
            pass
        except BaseException as error:
            items.put(_End(error))
        finally:
            closing = getattr(stream, "aclose", None)
            if closing is not None:
                with contextlib.suppress(BaseException):
                    await closing()

    task = loop.create_task(pump())

    def run() -> None:
        with contextlib.suppress(BaseException):
            loop.run_until_complete(task)
        with contextlib.suppress(BaseException):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    thread = threading.Thread(target=run, name="sluice-stream", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        stopping.set()
        if thread.is_alive():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)
            thread.join(timeout=10)
