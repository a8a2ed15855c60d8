"""How the operator splits per-pod writes over its writer threads: in order, in at most
as many runs as there are writers, none empty."""

from __future__ import annotations

import pytest

from oomguard.controller.deciding import _chunks


@pytest.mark.parametrize(("items", "count", "lengths"), [
    (0, 16, []),
    (1, 16, [1]),
    (15, 16, [1] * 15),
    (16, 16, [1] * 16),
    (17, 16, [2] * 8 + [1]),
    (550, 16, [35] * 15 + [25]),
])
def test_runs_keep_order_and_stay_within_the_writers(items: int, count: int,
                                                     lengths: list[int]) -> None:
    runs = _chunks(list(range(items)), count)
    assert [len(r) for r in runs] == lengths
    assert [i for run in runs for i in run] == list(range(items))
    assert len(runs) <= count
