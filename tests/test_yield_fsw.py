"""The payload manager's share of the EPS budget (flight_sw.payload._water_level):
every board at one common throttle cap, the boards' draw exactly the budget."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from flight_sw.payload import _water_level

boards = st.lists(st.tuples(st.floats(0.5, 10.0), st.floats(0.5, 20.0), st.floats(0.0, 1.0)), min_size=1, max_size=4)


@settings(max_examples=200, deadline=None)
@given(boards, st.floats(0.0, 100.0))
def test_water_level_meets_the_budget(bs, budget_w) -> None:
    y = _water_level(bs, budget_w)
    idle = sum(i for i, _s, _x in bs)
    draw = idle + sum(s * min(x, y) for _i, s, x in bs)
    assert 0.0 <= y <= 1.0
    if sum(i + s * x for i, s, x in bs) <= budget_w:
        assert y == 1.0  # every board gets what it wants
    elif idle >= budget_w:
        assert y == 0.0
    else:
        assert abs(draw - budget_w) < 1e-6 * max(1.0, budget_w)
