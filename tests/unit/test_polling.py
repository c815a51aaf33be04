"""The wait between polls: short after work, doubling while idle, capped."""

from __future__ import annotations

from outcrop.polling import PollInterval


def test_waits_double_while_idle_up_to_the_cap_and_reset_on_work() -> None:
    polls = PollInterval(0.2, 1.0)
    assert [polls.after(found_work=False) for _ in range(5)] == [0.4, 0.8, 1.0, 1.0, 1.0]
    assert polls.after(found_work=True) == 0.2
    assert polls.after(found_work=False) == 0.4


def test_a_cap_below_the_base_never_polls_faster_than_the_base() -> None:
    polls = PollInterval(0.5, 0.1)
    assert [polls.after(found_work=busy) for busy in (False, True, False)] == [0.5, 0.5, 0.5]
