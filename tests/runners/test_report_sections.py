"""The report's sections on records whose answers are known."""

from __future__ import annotations

import pytest

from pipelines.config import AuditConfig
from runners.report import sections


def _user(n: int, device: str, sent: bool, marketing: bool = True, segment: bool = False):
    counts = {"triggers.p": 2} if sent else {}
    if segment:
        counts["segment_entries.s"] = 1
    return {
        "user_id": f"u{n}",
        "counts": counts,
        "groups": {"device": device, "visitor": "new"},
        "marketing": marketing,
    }


def test_the_bias_audit_flags_a_group_below_four_fifths_of_the_best_and_ignores_tiny_ones():
    audit = [_user(n, "mobile", n % 2 == 0, segment=True) for n in range(100)]
    audit += [_user(100 + n, "desktop", n % 10 != 0, segment=True) for n in range(100)]
    audit += [_user(200 + n, "tablet", False) for n in range(5)]  # too few to judge
    audit += [_user(300 + n, "mobile", False, marketing=False) for n in range(50)]
    found = sections.bias(audit, [], [], ["s"], AuditConfig())
    rate = found["attributes"]["device"]["rates"]["trigger_rate"]
    # Of the users who allow marketing only: 50 of 100 mobile, 90 of 100 desktop, 0 of 5.
    assert rate["by_group"] == {"desktop": 0.9, "mobile": 0.5, "tablet": 0.0}
    assert rate["users"] == {"desktop": 100, "mobile": 100, "tablet": 5}
    assert rate["demographic_parity_ratio"] == pytest.approx(0.5 / 0.9, abs=1e-6)
    assert rate["demographic_parity_difference"] == pytest.approx(0.4)
    flagged = [f for f in found["flags"] if f["metric"] == "trigger_rate"]
    assert len(flagged) == 1 and flagged[0]["attribute"] == "device"
    assert (
        "device mobile were sent triggers at 56% of the rate of users with device desktop"
        in (flagged[0]["sentence"])
    )
    # Segment membership counts every user; mobile 100 of 150, desktop 100 of 100.
    member = found["attributes"]["device"]["rates"]["segment:s"]
    assert member["by_group"]["mobile"] == pytest.approx(100 / 150)
    # One group only: nothing to compare, nothing flagged.
    assert "demographic_parity_ratio" not in found["attributes"]["visitor"]["rates"]["trigger_rate"]
    assert found["not_audited"] == ["country", "region", "price_band"]


def test_equalized_odds_of_purchase_intent_by_group():
    audit = [_user(n, "mobile" if n < 50 else "desktop", False) for n in range(100)]
    probes, examples = [], []
    for n in range(100):
        bought = n % 2 == 0
        # Mobile scores rank buyers well, desktop scores are noise around the threshold.
        score = (0.9 if bought else 0.1) if n < 50 else (0.6 if n % 4 < 2 else 0.4)
        probes.append({"user_id": f"u{n}", "probe": f"u{n}:{n}:1", "score": score})
        examples.append({"kind": "example", "id": f"u{n}:{n}", "y": bought})
    intent = sections.bias(audit, probes, examples, [], AuditConfig())["attributes"]["device"][
        "intent"
    ]
    assert intent["by_group"]["mobile"]["roc_auc"] == 1.0
    assert intent["by_group"]["desktop"]["roc_auc"] == 0.5
    assert intent["equalized_odds_difference"] > 0.1
    # Three tablet users with 30 sessions, all scored backwards: shown, not compared.
    audit += [_user(200 + n, "tablet", False) for n in range(3)]
    for n in range(30):
        bought = n % 2 == 0
        user = f"u{200 + n % 3}"
        probes.append(
            {"user_id": user, "probe": f"{user}:{1000 + n}:1", "score": 0.1 + 0.8 * (not bought)}
        )
        examples.append({"kind": "example", "id": f"{user}:{1000 + n}", "y": bought})
    again = sections.bias(audit, probes, examples, [], AuditConfig())["attributes"]["device"]
    assert again["intent"]["by_group"]["tablet"] == {
        "sessions": 30,
        "users": 3,
        "mean_score": pytest.approx(0.5, abs=1e-6),
        "roc_auc": 0.0,
    }
    assert again["intent"]["equalized_odds_difference"] == intent["equalized_odds_difference"]


def _intent_inputs(sessions: int, signal):
    """Sessions of users ``u:N`` (user ids hold ``:``) that buy one in three; each
    whole, with prefixes at its 1st and 3rd events and probes there, the feature
    ``s_carts`` being ``signal(bought, k)``."""
    inputs, probes = [], []
    for n in range(sessions):
        user, start, bought = f"u:{n % 40}", 1_000 * n, n % 3 == 0
        session = f"{user}:{start}"
        whole = {"s_carts": signal(bought, 5)}
        inputs.append({"kind": "example", "id": session, "y": bought, "x": whole})
        for k in (1, 3):
            x = {"s_carts": signal(bought, k)}
            inputs.append({"kind": "prefix", "id": f"{session}#{k}", "y": bought, "x": x})
            inputs.append({"kind": "probe", "id": f"{session}:{k}", "y": None, "x": x})
            probes.append({"user_id": user, "probe": f"{session}:{k}", "score": x["s_carts"]})
    return probes, inputs


def test_served_intent_scores_each_kth_event_of_the_later_sessions_against_their_outcome():
    # Served scores that rank buyers first from the 3rd event on, not at the 1st.
    probes, inputs = _intent_inputs(300, lambda bought, k: float(bought and k > 1))
    served = sections.served_intent(probes, inputs)
    assert served["sessions"] == 300 and served["test_sessions"] == 90
    assert served["buying_share"] == pytest.approx(1 / 3, abs=1e-6)
    assert served["learned_examples"] == 900  # whole sessions and their prefixes
    assert served["by_event"]["1"]["auc"] == 0.5 and served["by_event"]["3"]["auc"] == 1.0
    assert served["by_event"]["3"]["sessions_reaching"] == 90
    # Offline, trained on the first 70%, scored on the same events of the same sessions.
    offline = served["reference_by_event"]
    assert offline["train_examples"] == 630
    assert offline["by_event"]["3"]["auc"] == 1.0 and offline["by_event"]["1"]["auc"] == 0.5
    assert served["reference"]["auc"] == 1.0 and served["reference"]["test_sessions"] == 90


def test_served_intent_without_examples_says_so():
    assert sections.served_intent([], [])["by_event"] == {}


def test_a_rule_that_reads_a_sensitive_field_fails_at_start_naming_it():
    from pipelines.config import ConfigError, parse_config

    pattern = {"stages": [{"name": "a", "where": {"country": "DE"}}]}
    with pytest.raises(ConfigError, match=r"patterns\.de\.stages\[0\]\.where reads 'country'"):
        parse_config({"patterns": {"de": pattern}})
    views = {"stages": [{"name": "a", "where": {"event_type": "product_view"}}]}
    with pytest.raises(ConfigError, match=r"patterns\.de\.same reads 'region'"):
        parse_config({"patterns": {"de": {**views, "same": ["region"]}}})
    allowed = {"audit": {"allow_sensitive_in_rules": True}, "patterns": {"de": pattern}}
    assert list(parse_config(allowed).patterns) == ["de"]
    # Device is audited, not sensitive by default: rules may read it.
    device = {"stages": [{"name": "a", "where": {"device": {"ne": "mobile"}}}]}
    assert list(parse_config({"patterns": {"desk": device}}).patterns) == ["desk"]
