"""The payload manager's share of the EPS budget (flight_sw.payload._share,
_water_level): the most FLOP per watt first, equals at one common level."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from flight_sw.payload import _share, _water_level

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


rated = st.lists(st.tuples(st.floats(0.5, 10.0), st.floats(0.5, 20.0), st.floats(0.0, 1.0),
                           st.sampled_from([0.0, 4e5, 1e6, 6e5])), min_size=1, max_size=4)


@settings(max_examples=200, deadline=None)
@given(rated, st.floats(0.0, 100.0), st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4))
def test_share_spends_the_budget_where_it_computes_most(bs, budget_w, other) -> None:
    """The budget's share never exceeds it (above the idle draw), never gives a board
    more than it wants, and no other share within the budget computes more."""
    ys = _share(bs, budget_w)
    idle = sum(i for i, _s, _x, _f in bs)
    above = sum(s * y for (_i, s, _x, _f), y in zip(bs, ys, strict=True))
    assert all(0.0 <= y <= x + 1e-12 for (_i, _s, x, _f), y in zip(bs, ys, strict=True))
    assert above <= max(0.0, budget_w - idle) + 1e-6
    work = sum(f * y for (_i, _s, _x, f), y in zip(bs, ys, strict=True))
    # any other feasible share: scaled into the budget, capped at what each board wants
    alt = [min(x, o) for (_i, _s, x, _f), o in zip(bs, other, strict=False)]
    need = sum(s * a for (_i, s, _x, _f), a in zip(bs, alt, strict=False))
    if need > 0 and need > budget_w - idle:
        k = max(0.0, budget_w - idle) / need
        alt = [a * k for a in alt]
    alt_work = sum(f * a for (_i, _s, _x, f), a in zip(bs, alt, strict=False))
    assert work >= alt_work * (1 - 1e-6) - 1e-6


def test_share_gives_the_budget_to_the_more_efficient_board_first() -> None:
    jetson, rpi = (5.0, 10.0, 1.0, 1e6), (2.7, 3.7, 1.0, 4e5)  # 1.00e5 and 1.08e5 FLOP/J above idle
    y_j, y_r = _share([jetson, rpi], 5.0 + 2.7 + 3.7 + 1.0)
    assert y_r == 1.0 and abs(y_j - 0.1) < 1e-6
    # equal (unknown) ratings: one common level, as _water_level
    y = _share([(5.0, 10.0, 1.0, 0.0), (2.7, 3.7, 1.0, 0.0)], 12.0)
    assert abs(y[0] - y[1]) < 1e-9 and abs(y[0] - _water_level([(5.0, 10.0, 1.0), (2.7, 3.7, 1.0)], 12.0)) < 1e-6
