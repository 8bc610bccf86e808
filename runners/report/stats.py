"""The report's statistics: each trigger's A/B test, and lift with a bootstrap by user.

statsmodels gives the intervals (Wilson's for each rate, Newcombe's hybrid
score interval for the difference of two rates, the log-adjusted one for
their ratio) and the power analysis behind the minimum detectable effect;
numpy draws the bootstrap. What is written here is their plumbing and the
sentences a marketer reads. Imports are lazy: only ``report`` needs these
libraries (``requirements-report.txt``).
"""

from __future__ import annotations

import math

ALPHA = 0.05
POWER = 0.8


def _rate(converted: int, n: int, alpha: float) -> dict:
    from statsmodels.stats.proportion import proportion_confint

    if n == 0:
        return {"n": 0, "converted": 0, "rate": None, "ci95": None}
    low, high = proportion_confint(converted, n, alpha=alpha, method="wilson")
    return {
        "n": n,
        "converted": converted,
        "rate": round(converted / n, 6),
        "ci95": [round(float(low), 6), round(float(high), 6)],
    }


def minimum_detectable_effect(
    control_rate: float, n_treatment: int, n_control: int, alpha=ALPHA, power=POWER
) -> dict:
    """The smallest change from ``control_rate``, up and down, that a two-sided test at
    these sizes detects with ``power`` (on Cohen's h, the arcsine scale), in rate units;
    None where the change would leave [0, 1]. ``smallest``: the nearer of the two.

    >>> found = minimum_detectable_effect(0.1, 1000, 1000)
    >>> round(found["up"], 4), round(found["down"], 4), round(found["smallest"], 4)
    (0.0406, 0.0344, 0.0344)
    >>> minimum_detectable_effect(0.9, 100, 9)["up"] is None
    True
    """
    from statsmodels.stats.power import NormalIndPower

    h = NormalIndPower().solve_power(
        effect_size=None,
        nobs1=n_treatment,
        alpha=alpha,
        power=power,
        ratio=n_control / n_treatment,
        alternative="two-sided",
    )
    angle = math.asin(math.sqrt(control_rate))
    up = angle + h / 2
    down = angle - h / 2
    found = {
        "up": math.sin(up) ** 2 - control_rate if up <= math.pi / 2 else None,
        "down": control_rate - math.sin(down) ** 2 if down >= 0 else None,
    }
    reachable = [change for change in found.values() if change is not None]
    found["smallest"] = min(reachable) if reachable else None
    return found


def ab_test(
    converted_treatment: int,
    n_treatment: int,
    converted_control: int,
    n_control: int,
    alpha: float = ALPHA,
    power: float = POWER,
) -> dict:
    """Treatment against control: each rate with Wilson's interval, the difference with
    Newcombe's, the lift (the ratio of the rates) with the log-adjusted interval, the
    minimum detectable effect at these sizes, and a sentence.

    >>> found = ab_test(56, 70, 48, 80)  # Newcombe (1998), Table II, example (a)
    >>> found["difference"], [round(end, 4) for end in found["difference_ci95"]]
    (0.2, [0.0524, 0.3339])
    """
    from statsmodels.stats.proportion import confint_proportions_2indep

    treatment = _rate(converted_treatment, n_treatment, alpha)
    control = _rate(converted_control, n_control, alpha)
    out = {"treatment": treatment, "control": control, "alpha": alpha, "power": power}
    if not n_treatment or not n_control:
        missing = "treatment" if not n_treatment else "control (held out)"
        out.update(difference=None, difference_ci95=None, lift=None, lift_ci95=None)
        out.update(mde=None, significant=False, underpowered=True)
        out["sentence"] = (
            "No test: nobody was sent or held out of it."
            if not n_treatment and not n_control
            else f"No test: no {missing} group."
        )
        return out
    difference = treatment["rate"] - control["rate"]
    low, high = confint_proportions_2indep(
        converted_treatment,
        n_treatment,
        converted_control,
        n_control,
        compare="diff",
        method="newcomb",
        alpha=alpha,
    )
    out["difference"] = round(difference, 6)
    out["difference_ci95"] = [round(float(low), 6), round(float(high), 6)]
    if converted_control and converted_treatment:
        lift_low, lift_high = confint_proportions_2indep(
            converted_treatment,
            n_treatment,
            converted_control,
            n_control,
            compare="ratio",
            method="log-adjusted",
            alpha=alpha,
        )
        out["lift"] = round(treatment["rate"] / control["rate"], 6)
        out["lift_ci95"] = [round(float(lift_low), 6), round(float(lift_high), 6)]
    else:
        out["lift"] = out["lift_ci95"] = None  # a rate of 0 has no ratio
    mde = minimum_detectable_effect(control["rate"], n_treatment, n_control, alpha, power)
    out["mde"] = None if mde["smallest"] is None else round(mde["smallest"], 6)
    out["mde_up"] = None if mde["up"] is None else round(mde["up"], 6)
    out["mde_down"] = None if mde["down"] is None else round(mde["down"], 6)
    out["significant"] = not low <= 0 <= high
    out["underpowered"] = not out["significant"] and (
        out["mde"] is None or abs(difference) < out["mde"]
    )
    out["sentence"] = _sentence(out)
    return out


def _points(rate: float) -> str:
    return f"{100 * rate:.1f}"


def _sentence(found: dict) -> str:
    treatment, control = found["treatment"], found["control"]
    low, high = found["difference_ci95"]
    said = (
        f"Treatment converted {_points(treatment['rate'])}% of {treatment['n']:,}, the held-out "
        f"control {_points(control['rate'])}% of {control['n']:,}: "
        f"{100 * found['difference']:+.1f} points (95% interval {100 * low:+.1f} to "
        f"{100 * high:+.1f})."
    )
    if found["significant"]:
        way = "raised" if found["difference"] > 0 else "lowered"
        return f"{said} The trigger {way} conversion."
    if found["mde"] is None:
        return f"{said} Too few users to tell: at these sizes no change could be detected."
    if found["underpowered"]:
        reach = control["rate"] + (
            found["mde"] if found["mde"] == found["mde_up"] else -found["mde"]
        )
        return (
            f"{said} Too few users to tell: at these sizes the test detects only a change of "
            f"{100 * found['mde']:.1f} points or more ({_points(control['rate'])}% to "
            f"{_points(reach)}%)."
        )
    return (
        f"{said} No effect shown, though the test could have detected one of "
        f"{100 * found['mde']:.1f} points or more."
    )


def bootstrap_ratio(
    numerator_a,
    denominator_a,
    numerator_b,
    denominator_b,
    reps: int = 2000,
    seed: int = 0,
    alpha: float = ALPHA,
    chunk: int = 200,
) -> dict:
    """``(sum num_a / sum den_a) / (sum num_b / sum den_b)`` over users, with a percentile
    interval from resampling users (Poisson(1) weights per user and draw), so a user's
    repeated visits move together instead of counting as independent trials.

    Each argument holds one number per user, in the same order.

    >>> found = bootstrap_ratio([1, 0, 2, 1], [2, 2, 2, 2], [1, 1, 1, 1], [4, 4, 4, 4])
    >>> found["ratio"], found["users"], found["ci95"][0] < found["ratio"] < found["ci95"][1]
    (2.0, 4, True)
    """
    import numpy as np

    columns = np.array([numerator_a, denominator_a, numerator_b, denominator_b], dtype=float)
    users = columns.shape[1]
    sums = columns.sum(axis=1)
    if not users or sums[1] == 0 or sums[2] == 0 or sums[3] == 0:
        return {"ratio": None, "ci95": None, "users": users, "reps": 0}
    point = (sums[0] / sums[1]) / (sums[2] / sums[3])
    rng = np.random.default_rng(seed)
    draws = []
    for start in range(0, reps, chunk):
        weights = rng.poisson(1.0, size=(min(chunk, reps - start), users))
        totals = weights @ columns.T  # draws x 4
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = (totals[:, 0] / totals[:, 1]) / (totals[:, 2] / totals[:, 3])
        draws.append(ratios[np.isfinite(ratios)])
    found = np.concatenate(draws)
    low, high = np.quantile(found, [alpha / 2, 1 - alpha / 2])
    return {
        "ratio": round(float(point), 6),
        "ci95": [round(float(low), 6), round(float(high), 6)],
        "users": users,
        "reps": int(found.size),
    }


def auc(scores, labels) -> float | None:
    """scikit-learn's ROC AUC (ties counted half); None without both labels.

    >>> auc([0.9, 0.1, 0.4, 0.6], [True, False, True, False])
    0.75
    """
    import numpy as np
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels, dtype=bool)
    if labels.all() or not labels.any():
        return None
    return float(roc_auc_score(labels, np.asarray(scores, dtype=float)))


def bootstrap_auc(scores, labels, groups, reps: int = 200, seed: int = 0, alpha=ALPHA) -> dict:
    """``auc`` with a percentile interval from resampling ``groups`` (users) with
    replacement, so one user's sessions move together."""
    import numpy as np

    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels, dtype=bool)
    point = auc(scores, labels)
    found = {"auc": None if point is None else round(point, 6), "n": int(labels.size)}
    found["positives"] = int(labels.sum())
    if point is None:
        found["ci95"] = None
        return found
    _, index = np.unique(np.asarray(groups), return_inverse=True)
    members = np.split(np.argsort(index, kind="stable"), np.cumsum(np.bincount(index))[:-1])
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(reps):
        picked = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
        value = auc(scores[picked], labels[picked])
        if value is not None:
            draws.append(value)
    low, high = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    found["ci95"] = [round(float(low), 6), round(float(high), 6)]
    return found
