"""Long calls release the GIL; renders do not leak."""

from __future__ import annotations

import re
import threading
import time

import compress_bench as cb
from conftest import rss_kib

LONG = "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money. " * 6000


def progress_during(call) -> tuple[int, float]:
    """Progress marks of a pure-Python thread inside the middle 80 % of `call()`, and its duration."""
    stamps: list[float] = []
    stop = threading.Event()

    def python_work():
        n = 0
        while not stop.is_set():
            n += 1  # pure Python: runs only while this thread holds the GIL
            if n % 200 == 0:
                stamps.append(time.perf_counter())

    worker = threading.Thread(target=python_work)
    worker.start()
    time.sleep(0.05)
    t0 = time.perf_counter()
    call()
    t1 = time.perf_counter()
    stop.set()
    worker.join()
    d = t1 - t0
    return len([s for s in stamps if t0 + 0.1 * d < s < t1 - 0.1 * d]), d


def test_a_render_releases_the_gil_while_another_thread_runs_python():
    pages = []
    inside, d = progress_during(lambda: pages.extend(cb.paginate(LONG, mode="tiny", ratio=10)))
    assert len(pages) > 50
    assert d > 0.2, f"the call took {d:.3f} s, too short to tell"
    assert inside >= 100, f"{inside} progress marks of the Python thread during a {d:.2f} s render"
    # The control: a C call that holds the GIL (the regex engine backtracking) lets the thread do ~nothing.
    held, d_re = progress_during(lambda: re.match(r"(a+)+b", "a" * 23))
    assert held < inside / 10, f"the control saw {held} marks in {d_re:.2f} s: the measurement cannot tell"


def test_memory_and_engine_calls_run_in_parallel_threads():
    results = {}

    def work(i):
        m = cb.OpticalMemory(schedule="ladder:levels=text@0/tiny@1")
        for k in range(4):
            m.push(f"r{k}", "user", f"thread {i} round {k}: " + "words " * 50)
        results[i] = m.context().tokens

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and len(set(results.values())) == 1


def test_no_leak_over_1000_renders():
    def burst(n):
        for i in range(n):
            p = cb.render(f"Round {i}: the whale surfaced near the ship at dawn. " * 8, mode="tiny", ratio=10)
            assert len(p.png) > 1000 and p.text
            if i % 10 == 0:
                p.array()

    burst(100)  # warm-up: tokenizer, fonts, allocator pools
    before = rss_kib()
    burst(1000)
    after = rss_kib()
    growth = after - before
    print(f"RSS {before} KiB -> {after} KiB over 1000 renders ({growth:+d} KiB)")
    # A leaked page is ~768 KiB of pixels plus its PNG: 1000 of them would be ~1 GiB.
    assert growth < 16 * 1024, f"RSS grew by {growth} KiB over 1000 renders"
