"""The service's collector settings: start-up objects frozen, young passes far less often."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from etcwallet.core.gc_tuning import YOUNG_THRESHOLD, tune_for_service


@pytest.fixture
def restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


@pytest.mark.usefixtures("restore_gc")
def test_tuning_freezes_start_up_objects_and_raises_the_young_threshold() -> None:
    _, middle, old = gc.get_threshold()
    started_with = [object()]  # a container made "at start-up"
    tune_for_service()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, middle, old)
    assert gc.get_freeze_count() > 0
    # Frozen objects sit in the permanent generation, which no collection walks.
    assert all(o is not started_with for o in gc.get_objects())
