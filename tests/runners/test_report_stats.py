"""The report's statistics: the A/B test of a trigger, and lift with a bootstrap by user."""

from __future__ import annotations

import pytest

from runners.report import stats


def test_a_clear_effect_is_called_and_an_undersized_test_says_what_it_could_detect():
    clear = stats.ab_test(300, 1000, 200, 1000)
    assert clear["significant"] and not clear["underpowered"]
    assert clear["difference"] == pytest.approx(0.1)
    low, high = clear["lift_ci95"]
    assert clear["lift"] == pytest.approx(1.5) and low < clear["lift"] < high
    assert "raised conversion" in clear["sentence"]

    # A 10% holdout of 1,000 triggers: 100 in control.
    small = stats.ab_test(30, 900, 2, 100)
    assert not small["significant"] and small["underpowered"]
    assert small["mde"] > abs(small["difference"])
    assert "Too few users to tell" in small["sentence"]
    assert f"{100 * small['mde']:.1f} points" in small["sentence"]
    # The same rates at ten times the size: detectable changes shrink about threefold.
    bigger = stats.ab_test(300, 9000, 20, 1000)
    assert bigger["mde"] < small["mde"] / 2.5


def test_no_control_group_is_no_test():
    found = stats.ab_test(10, 100, 0, 0)
    assert found["sentence"] == "No test: no control (held out) group."
    assert found["difference"] is None and found["control"]["rate"] is None
    assert stats.ab_test(0, 0, 0, 0)["sentence"] == "No test: nobody was sent or held out of it."


def test_a_zero_rate_has_an_interval_but_no_lift():
    found = stats.ab_test(5, 40, 0, 40)
    assert found["control"]["rate"] == 0 and found["control"]["ci95"][1] > 0
    assert found["lift"] is None and found["difference_ci95"] is not None


def test_the_bootstrap_by_user_widens_the_interval_when_users_repeat_themselves():
    # 100 users with 10 visits each; 20 of them convert on every visit, the others never:
    # 200 conversions of 1,000 visits, against a base of 1 in 10 visits.
    clustered = stats.bootstrap_ratio(
        [10] * 20 + [0] * 80, [10] * 100, [1] * 100, [10] * 100, seed=3
    )
    # The same totals from 1,000 users of one visit each.
    independent = stats.bootstrap_ratio(
        [1] * 200 + [0] * 800, [1] * 1000, [1] * 100 + [0] * 900, [1] * 1000, seed=3
    )
    assert clustered["ratio"] == independent["ratio"] == pytest.approx(2.0)
    width = [found["ci95"][1] - found["ci95"][0] for found in (clustered, independent)]
    assert width[0] > 1.5 * width[1]
    # Seeded: the same draws give the same interval.
    again = stats.bootstrap_ratio([10] * 20 + [0] * 80, [10] * 100, [1] * 100, [10] * 100, seed=3)
    assert again == clustered


def test_a_ratio_without_a_base_is_none():
    assert stats.bootstrap_ratio([1], [2], [0], [5])["ratio"] is None
    assert stats.bootstrap_ratio([], [], [], [])["users"] == 0
