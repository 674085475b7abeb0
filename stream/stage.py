"""The stage contract: one small object with one job, consuming a typed item and emitting the next.
`stream.graphs.pipeline` runs stages in threads joined by bounded queues."""
from __future__ import annotations

from typing import Any, Callable


class Stage:
    name = "stage"
    engine = "python"
    device: Any = "cpu"
    busy = 0.0  # seconds spent in process/finish, excluding waits on the queues

    def process(self, item: Any, emit: Callable[[Any], None]) -> None:
        emit(item)

    def finish(self, emit: Callable[[Any], None]) -> None:
        pass

    def describe(self) -> str:
        return f"{self.name} {self.engine} ({self.device})"

    def warmup(self) -> None:
        """One-off work (kernel compilation, graph capture) done before the first item, off the clock."""

    def close(self) -> None:
        """After the run, finished or not: release what the stage holds (a sink removes a partial file)."""
