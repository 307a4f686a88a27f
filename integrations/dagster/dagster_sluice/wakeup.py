"""Waking the launcher's run storage loop when Dagster records an event, on PostgreSQL storage.

Dagster's run storage has no change feed, so the launcher reads it every `poll_interval_seconds`.
Dagster's PostgreSQL event log storage, though, sends `NOTIFY run_events` with every event it
stores, and a run's status changes only with an event of its own (RUN_START, RUN_SUCCESS, ...).
Listening on that channel lets the loop read the run storage as soon as something happened
instead of up to a whole interval later.

Dagster writes the event, notifies, and only then updates the run's row, so one read right after
a notification may be too early: while notifications keep coming, and for `_SETTLE` seconds
after the last, the loop reads every `_FAST` seconds. The timer stays: with SQLite storage, or
should Dagster stop notifying, or while the listening connection is down, the loop reads at its
interval as before. A notification only wakes the loop; what it reads decides.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from urllib.parse import urlsplit, urlunsplit

from dagster import DagsterInstance

_log = logging.getLogger("dagster_sluice.launcher")

#: The channel Dagster's PostgresEventLogStorage notifies on for every event it stores.
CHANNEL = "run_events"

#: While notifications come, and this long after the last one, the loop reads every `_FAST` s.
_SETTLE = 0.1
_FAST = 0.015


def postgres_url_of(instance: DagsterInstance) -> str | None:
    """The URL of the instance's PostgreSQL event log storage, or None for any other storage.
    A wrapping storage (SluiceEventLogStorage) answers its wrapped storage's attributes."""
    url = getattr(instance.event_log_storage, "postgres_url", None)
    if not isinstance(url, str) or not url.startswith(("postgresql", "postgres:")):
        return None
    parts = urlsplit(url)
    # SQLAlchemy's dialect suffix (postgresql+psycopg2://) is not part of a libpq URL.
    return urlunsplit(parts._replace(scheme="postgresql"))


class RunEventWakeup:
    """Listens on Dagster's `run_events` channel in a thread of its own and tells the run storage
    loop how long to wait before its next read (`wait`)."""

    def __init__(self, url: str, stop: threading.Event) -> None:
        self._url = url
        self._stop = stop
        self._notified = threading.Event()
        self._last = 0.0  # monotonic time of the last notification
        #: Set while the channel is listened to.
        self.listening = threading.Event()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._listen, name="dagster-run-events", daemon=True)
        thread.start()
        return thread

    def wait(self, interval: float) -> None:
        """Waits until the loop should read again: at most `interval`, less once Dagster stored
        an event."""
        self._notified.clear()  # first: a notification from here on ends the wait below
        if time.monotonic() - self._last < _SETTLE:
            self._stop.wait(_FAST)
            return
        if self._notified.wait(interval):
            self._stop.wait(_FAST / 3)  # Dagster updates the run's row just after it notifies

    def _listen(self) -> None:
        import psycopg2  # dagster-postgres's driver, there whenever its storage is

        backoff = 0.5
        while not self._stop.is_set():
            try:
                conn = psycopg2.connect(self._url)
            except psycopg2.Error as error:
                _log.warning("listening for Dagster's run events failed (%s); reading on a timer", error)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = 0.5
            try:
                conn.autocommit = True
                with conn.cursor() as cursor:
                    cursor.execute(f"LISTEN {CHANNEL}")
                self.listening.set()
                while not self._stop.is_set():
                    if select.select([conn], [], [], 1.0)[0]:
                        conn.poll()
                        if conn.notifies:
                            conn.notifies.clear()
                            self._last = time.monotonic()
                            self._notified.set()
            except Exception as error:
                _log.warning("the connection listening for Dagster's run events failed: %s", error)
                self._stop.wait(backoff)
            finally:
                self.listening.clear()
                conn.close()
