"""How the benchmark times (launch/speed/timing.py): cases in turn, and a GPU's peak memory."""

from launch.speed import timing


def test_cases_are_timed_in_turn_after_one_warm_up_each(monkeypatch):
    now, calls = [0.0], []
    monkeypatch.setattr(timing.time, "perf_counter", lambda: now[0])
    costs = {"a": iter([90, 1, 2, 30]), "b": iter([90, 5, 5, 6])}  # the first of each is its warm-up

    def case(name):
        def call():
            calls.append(name)
            now[0] += next(costs[name])

        return call

    seconds = timing.timed_in_turn({"a": case("a"), "b": case("b")}, repeats=3)
    assert calls == ["a", "b", "a", "b", "a", "b", "a", "b"]
    assert seconds == {"a": 2.0, "b": 5.0}  # medians of the timed calls, the warm-ups left out


def test_peak_device_bytes_is_the_allocators_peak_and_none_on_a_cpu(monkeypatch):
    if timing.jax.default_backend() == "cpu":
        assert timing.peak_device_bytes() is None  # a CPU's allocator reports nothing

    class Gpu:
        def memory_stats(self):
            return {"bytes_in_use": 10, "peak_bytes_in_use": 123}

    monkeypatch.setattr(timing.jax, "devices", lambda: [Gpu()])
    assert timing.peak_device_bytes() == 123
