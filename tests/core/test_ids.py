"""UUIDv7 ids: the version and variant a reader checks, the time inside, order, uniqueness."""

from __future__ import annotations

import itertools
import time
from uuid import UUID

from etcwallet.core.ids import id_time_ms, new_id


def test_version_and_variant_are_those_of_rfc_9562() -> None:
    value = new_id()
    assert value.version == 7
    assert value.variant == "specified in RFC 4122"
    assert UUID(str(value)) == value


def test_the_time_inside_is_the_time_it_was_made() -> None:
    before = time.time_ns() // 1_000_000
    value = new_id()
    after = time.time_ns() // 1_000_000
    assert before <= id_time_ms(value) <= after


def test_ids_made_later_sort_after_earlier_ones() -> None:
    first = new_id()
    time.sleep(0.002)
    second = new_id()
    assert first < second
    assert str(first) < str(second)  # the text form sorts the same way, as PostgreSQL's uuid does


def test_ids_are_unique_and_random_below_the_timestamp() -> None:
    values = [new_id() for _ in range(10_000)]
    assert len(set(values)) == len(values)
    low_bits = {v.int & ((1 << 62) - 1) for v in values}
    assert len(low_bits) == len(values)


def test_ids_one_process_makes_strictly_increase_even_within_a_millisecond() -> None:
    values = [new_id() for _ in range(20_000)]  # far more than one a millisecond
    assert all(a < b for a, b in itertools.pairwise(values))
    assert len({id_time_ms(v) for v in values}) < len(values)  # many share a millisecond


def test_ids_made_in_threads_at_once_are_unique_and_each_thread_sees_them_increase() -> None:
    from concurrent.futures import ThreadPoolExecutor

    def make(_: int) -> list[UUID]:
        return [new_id() for _ in range(2_000)]

    with ThreadPoolExecutor(8) as pool:
        runs = list(pool.map(make, range(8)))
    for run in runs:
        assert all(a < b for a, b in itertools.pairwise(run))
    assert len({v for run in runs for v in run}) == 8 * 2_000
