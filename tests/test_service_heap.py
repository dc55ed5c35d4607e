"""The service's start-up heap: what it imports is built without collector passes."""

from __future__ import annotations

import gc

from service import heap


def _collections() -> list[int]:
    return [generation["collections"] for generation in gc.get_stats()]


def test_what_is_built_goes_to_the_oldest_generation_without_a_collection() -> None:
    gc.unfreeze()  # a test before, in this process, may have frozen its heap: building() then defers
    with heap.building():
        assert not gc.isenabled()
        before = _collections()
        built = [[i] for i in range(100_000)]  # far past the young generation's threshold
        during = _collections()
    assert gc.isenabled()
    assert during == before  # no pass of any generation while building
    assert _collections() == before  # nor one to file what was built
    oldest = {id(thing) for thing in gc.get_objects(generation=2)}
    assert id(built[0]) in oldest and id(built[-1]) in oldest
    assert gc.get_freeze_count() == 0  # collectable as ever: the next full pass walks them


def test_building_leaves_a_paused_collector_paused_and_a_frozen_heap_frozen() -> None:
    gc.disable()
    try:
        with heap.building():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
    before = [object()]  # a tracked container, frozen below
    gc.freeze()
    try:
        with heap.building():
            kept = [[i] for i in range(1_000)]
        # The frozen heap stays out of every generation (the freeze count is no witness: frozen
        # objects freed meanwhile, by other threads too, lower it); what was built is collectable.
        tracked = {id(thing) for thing in gc.get_objects()}
        assert id(before) not in tracked and gc.get_freeze_count() > 0
        assert id(kept[0]) in tracked
    finally:
        gc.unfreeze()
