"""The book's latencies: one committed record of every network it times (fer_lib.timings)."""

from __future__ import annotations

import pytest

from fer_lib import timings


def test_the_record_times_exactly_the_networks_the_book_shows():
    """A new submission or design makes the record stale: re-run the benchmark."""
    assert sorted(timings.stored_latency().index) == sorted(timings.timed_runs()), (
        "results/latency.json is stale: python benchmarks/bench_latency.py --write")


def test_the_record_names_its_machine_and_single_thread():
    timed = timings.stored_latency()
    assert timed.attrs["threads"] == 1 and timed.attrs["machine"]
    assert (timed["timed runs"] == timings.REPEATS).all()


def test_a_missing_record_names_the_benchmark_that_writes_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="bench_latency.py --write"):
        timings.stored_latency(tmp_path)


def test_measure_times_a_stored_network_in_both_runtimes():
    table = timings.measure(["long-27k-early"], repeats=2)
    row = table.set_index("model").loc["long-27k-early"]
    assert row["torch median ms"] > 0 and row["ort median ms"] > 0
