import threading

import pytest

from stream.graphs.pipeline import Pipeline, Stage


class Double(Stage):
    def process(self, item, emit):
        emit(item * 2)


class Collect(Stage):
    def __init__(self):
        self.items, self.finished = [], False

    def process(self, item, emit):
        self.items.append(item)

    def finish(self, emit):
        self.finished = True


class Boom(Stage):
    def process(self, item, emit):
        if item == 3:
            raise ValueError("boom at 3")
        emit(item)


def test_items_flow_in_order_and_finish_reaches_the_sink():
    sink = Collect()
    Pipeline([Double(), sink]).run(range(100))
    assert sink.items == [2 * i for i in range(100)] and sink.finished


def test_an_error_stops_everything_and_reaches_the_caller():
    endless = iter(lambda: 3, None)  # a source that never ends
    with pytest.raises(ValueError, match="boom at 3"):
        Pipeline([Boom(), Collect()]).run(endless)


def test_bounded_queues_hold_back_the_producer():
    gate, produced = threading.Event(), []

    class Slow(Stage):
        def process(self, item, emit):
            gate.wait()

    def source():
        for i in range(50):
            produced.append(i)
            yield i

    p = Pipeline([Double(), Slow()], depth=2)
    t = threading.Thread(target=p.run, args=(source(),))
    t.start()
    t.join(timeout=0.5)
    assert len(produced) < 10  # queues of 2 between 3 threads: the source is stopped early
    gate.set()
    t.join(timeout=10)
    assert len(produced) == 50
