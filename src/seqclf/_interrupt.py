"""Ctrl-C during ``fit``: the first press ends the run between two steps, the second at once."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType, TracebackType

__all__ = ["DeferredInterrupt"]

logger = logging.getLogger(__name__)


class DeferredInterrupt:
    """While active, hold the first SIGINT until the training loop calls :meth:`check`.

    A ``KeyboardInterrupt`` that lands inside an optimizer step would leave the weights
    half updated; holding it until the step is done makes the state that is then saved
    one a resumed run continues exactly. The handler is installed only in the main thread
    and only over Python's default handler (a handler the user installed is kept).
    """

    def __init__(self) -> None:
        self.requested = False
        self.forced = False
        self._previous: object = None

    def __enter__(self) -> DeferredInterrupt:
        self.requested = self.forced = False
        in_main_thread = threading.current_thread() is threading.main_thread()
        if in_main_thread and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)  # type: ignore[arg-type]
            self._previous = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            self.forced = True
            raise KeyboardInterrupt
        self.requested = True
        logger.warning("Ctrl-C: training stops after the current step (press again to stop at once)")

    def check(self) -> None:
        """Raise the held ``KeyboardInterrupt``, if there is one."""
        if self.requested:
            raise KeyboardInterrupt  # `requested` stays set: another Ctrl-C now stops at once
