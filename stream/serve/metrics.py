"""`/metrics`: the server's counters in Prometheus text format, names prefixed `lipstream_`."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import HistogramMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY = (0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)
_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    def __init__(self, workers):
        """`workers()`: the lip-sync workers in use, whose batch sizes are reported."""
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions = Gauge("lipstream_sessions", "Live sessions open", registry=r)
        self.frames = Counter("lipstream_frames_sent", "Video frames sent to viewers", registry=r)
        self.late = Counter("lipstream_late_frames", "Frames that left more than one frame period late", registry=r)
        self.say_latency = Histogram("lipstream_say_to_first_frame_seconds",
                                     "From a say request to its first speaking frame leaving the server",
                                     buckets=_LATENCY, registry=r)
        self.interrupt_latency = Histogram("lipstream_interrupt_seconds",
                                           "From an interrupt request to the first idle frame leaving the server",
                                           buckets=_LATENCY, registry=r)
        self._workers = workers
        r.register(self)

    def collect(self):
        """Lip-sync batch sizes, read from the shared workers at scrape time."""
        sizes: dict[int, int] = {}
        for worker in self._workers():
            for n, count in worker.batch_sizes.items():
                sizes[n] = sizes.get(n, 0) + count
        buckets, total, cumulative = [], 0, 0
        for edge in _BATCHES:
            cumulative = sum(c for n, c in sizes.items() if n <= edge)
            buckets.append((str(edge), cumulative))
        total = sum(sizes.values())
        buckets.append(("+Inf", total))
        family = HistogramMetricFamily("lipstream_lipsync_batch_frames", "Frames per lip-sync model call")
        family.add_metric([], buckets, sum_value=sum(n * c for n, c in sizes.items()))
        yield family

    def text(self) -> bytes:
        return generate_latest(self.registry)
