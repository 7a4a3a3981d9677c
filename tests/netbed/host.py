"""One machine of the bed: a network namespace with a TUN device into the relay and its addresses."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .system import call_in_namespace, enter_namespace

T = TypeVar("T")


@dataclass
class Host:
    name: str
    namespace: str
    device: str
    address: str
    """The address the host sends from (changed by :meth:`NetBed.move`)."""
    addresses: list[str] = field(default_factory=list)
    """Every address it holds, ``address`` included."""

    def __post_init__(self) -> None:
        if self.address not in self.addresses:
            self.addresses.insert(0, self.address)

    def exec_argv(self, argv: list[str]) -> list[str]:
        """``argv`` prefixed to run inside this host (``ip netns exec`` execs it: same pid, same signals)."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in a short-lived thread inside this host's namespace."""
        return call_in_namespace(self.namespace, fn)

    def socket(self, family: int = socket.AF_INET, kind: int = socket.SOCK_DGRAM) -> socket.socket:
        """A socket that lives in this host's namespace, usable from any thread of the test."""
        return self.call(lambda: socket.socket(family, kind))

    async def run_async(self, main: Callable[[], Awaitable[T]]) -> T:
        """Await ``main()`` on a private event loop in a thread inside this host's namespace.

        Everything that coroutine opens (aiortc's ICE sockets, aiohttp connections) belongs to this
        host, while the caller's loop keeps running in the test's own namespace. The thread ends
        with ``main()``; cancelling the caller does not reach into the private loop, so give
        ``main`` its own timeout.
        """
        caller = asyncio.get_running_loop()
        result: asyncio.Future[T] = caller.create_future()

        def settle(outcome: T | None, error: BaseException | None) -> None:
            if result.done():
                return
            if error is not None:
                result.set_exception(error)
            else:
                result.set_result(outcome)  # type: ignore[arg-type]

        def target() -> None:
            try:
                enter_namespace(self.namespace)

                async def wrapped() -> T:
                    return await main()

                outcome = asyncio.run(wrapped())
            except BaseException as error:
                caller.call_soon_threadsafe(settle, None, error)
            else:
                caller.call_soon_threadsafe(settle, outcome, None)

        thread = threading.Thread(target=target, name=f"netns:{self.namespace}:loop", daemon=True)
        thread.start()
        return await result
