"""Link errors leave a trace: every failed link call the payload manager counts in
``link_errors`` is also a ``link_error`` event naming the board, the command and the
cause. Two real emulated boards over ptys (the bench of tests/test_fsw_payload.py)."""

from __future__ import annotations

from test_fsw_payload import fsw_bench, make_fsw, queue, run_until  # noqa: F401 - fsw_bench is a fixture

NS = 1_000_000_000


def _link_errors(fsw) -> list:
    return fsw.events.named("link_error")


def test_every_counted_link_error_is_an_event_with_board_command_and_cause(fsw_bench) -> None:  # noqa: F811
    emus, links, _switches, _key = fsw_bench
    fsw, clock, _plant = make_fsw(fsw_bench)
    jid = queue(fsw, steps=100_000)
    assert run_until(fsw, clock, lambda: any(r.state == "running" for r in fsw.payload.jobs[jid].runs))
    assert fsw.stats()["link_errors"] == 0 and not _link_errors(fsw)  # healthy boards: no trace

    # b0 hangs: its time syncs go unanswered (timeouts), b1 keeps answering
    links["b0"].inject_hang(0)
    t_hang = clock.t_ns
    run_until(fsw, clock, lambda: False, max_s=3)
    evs = _link_errors(fsw)
    assert len(evs) == fsw.stats()["link_errors"] >= 3  # one per frame at least
    for e in evs:
        assert e.t_ns > t_hang and e.severity == "warning"
        assert e.fields["board"] == "b0" and e.fields["command"] == "time_sync"
        assert e.fields["cause"].startswith("LinkTimeout: time_sync"), e.fields

    # b1's port goes away (its link closed): the cause is the link's own message,
    # without the port's name (a pty's name changes from run to run)
    url = links["b1"].url
    links["b1"].close()
    n = len(evs)
    run_until(fsw, clock, lambda: False, max_s=1)
    new = [e for e in _link_errors(fsw)[n:] if e.fields["board"] == "b1"]
    assert new and new[0].fields["command"] == "time_sync"
    assert new[0].fields["cause"] == "LinkError: time_sync: link to <port> is closed", new[0].fields
    assert url not in new[0].fields["cause"]
    assert len(_link_errors(fsw)) == fsw.stats()["link_errors"]
    fsw.close()
