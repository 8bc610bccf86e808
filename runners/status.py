"""A status line on a terminal while a replay runs: what was read, ordered and written.

It reads ``transforms.progress`` (kept by the steps whose workers run in this
process) twice a second and redraws one line on stderr; it draws nothing
when stderr is not a terminal, so logs and pipes stay clean.
"""

from __future__ import annotations

import sys
import threading
import time

from transforms import progress


def _line(tally: dict[str, int], elapsed: float) -> str:
    """
    >>> _line({"records_read": 1200, "items_released": 800, "profiles_written": 30}, 4.0)
    '0:04  read 1,200 records  in order 800 events and sessions (200/s)  profiles written 30'
    """
    minutes, seconds = divmod(int(elapsed), 60)
    released = tally.get("items_released", 0)
    rate = released / elapsed if elapsed > 0 else 0.0
    return (
        f"{minutes}:{seconds:02d}  read {tally.get('records_read', 0):,} records  "
        f"in order {released:,} events and sessions ({rate:,.0f}/s)  "
        f"profiles written {tally.get('profiles_written', 0):,}"
    )


class StatusLine:
    """Use as ``with StatusLine(enabled): run()``; draws only on a terminal."""

    def __init__(self, enabled: bool = True, stream=None, every_s: float = 0.5):
        self._stream = stream or sys.stderr
        self._enabled = enabled and self._stream.isatty()
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0

    def __enter__(self) -> StatusLine:
        progress.reset()
        self._started = time.monotonic()
        if self._enabled:
            self._thread = threading.Thread(target=self._draw_until_stopped, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._draw()
        self._stream.write("\n")
        self._stream.flush()

    def _draw_until_stopped(self) -> None:
        while not self._stop.wait(self._every_s):
            self._draw()

    def _draw(self) -> None:
        line = _line(progress.read(), time.monotonic() - self._started)
        self._stream.write("\r\x1b[K" + line)  # back to the start, clear, redraw
        self._stream.flush()
