"""The report as one static HTML page: matplotlib figures inlined as SVG, and tables.

matplotlib rather than plotly: the page then needs no script at all (it opens
offline, prints, and stays about a tenth of the size of one with plotly's
library inlined), and the SVG bytes are stable for the same numbers. Every
figure is a ``<figure data-plot="ID">``; ``report.json`` lists them under
``plots`` with the key of the numbers behind each.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import re

from runners.evaluate_cmd import cell

COLOURS = {"treatment": "#1f77b4", "control": "#ff7f0e", "members": "#2ca02c"}


def _svg(figure) -> str:
    import matplotlib

    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text
    matplotlib.rcParams["svg.hashsalt"] = "microtarget"  # the same ids for the same figure
    out = io.StringIO()
    figure.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = out.getvalue()
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.S)
    return text[text.index("<svg") :]


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M")


def trigger_rates(triggers: dict) -> str:
    """Conversion of treatment and control users per pattern, with Wilson intervals."""
    names = [name for name, t in triggers.items() if t["by_user"]["treatment"]["n"]]
    figure = _figure(7, 0.6 + 0.45 * max(len(names), 1))
    axes = figure.add_subplot()
    for offset, group in ((-0.12, "treatment"), (0.12, "control")):
        for row, name in enumerate(names):
            found = triggers[name]["by_user"][group]
            if found["rate"] is None:
                continue
            low, high = found["ci95"]
            axes.errorbar(
                100 * found["rate"],
                row + offset,
                xerr=[[100 * (found["rate"] - low)], [100 * (high - found["rate"])]],
                fmt="o",
                color=COLOURS[group],
                label=group if row == 0 else None,
                capsize=3,
            )
    axes.set_yticks(range(len(names)), names)
    axes.invert_yaxis()
    axes.set_xlabel("users who converted after a trigger (%), 95% Wilson interval")
    if names:
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return _svg(figure)


def _forest(rows: list[tuple], line: float, label: str, marker: str) -> str:
    """One row per ``(name, value, (low, high), colour)``: the value and its interval."""
    figure = _figure(7, 0.6 + 0.45 * max(len(rows), 1))
    axes = figure.add_subplot()
    for place, (_, value, (low, high), colour) in enumerate(rows):
        axes.errorbar(
            value, place, xerr=[[value - low], [high - value]], fmt=marker, color=colour, capsize=3
        )
    axes.axvline(line, color="#cc0000", linewidth=1)
    axes.set_yticks(range(len(rows)), [row[0] for row in rows])
    axes.invert_yaxis()
    axes.set_xlabel(label)
    return _svg(figure)


def trigger_differences(triggers: dict) -> str:
    """Treatment minus control per pattern, with Newcombe's interval."""
    rows = [
        (
            name,
            100 * found["difference"],
            tuple(100 * end for end in found["difference_ci95"]),
            "#333333" if found["significant"] else "#999999",
        )
        for name, found in ((name, t["by_user"]) for name, t in triggers.items())
        if found["difference"] is not None
    ]
    return _forest(rows, 0, "treatment minus control (points), 95% Newcombe interval", "s")


def segment_sizes(segments: dict) -> str:
    """Members of each segment over event time, against its min_size."""
    names = [name for name, s in segments.items() if s["series"]]
    columns = 2
    rows = max((len(names) + columns - 1) // columns, 1)
    figure = _figure(9, 2.2 * rows)
    for place, name in enumerate(names):
        axes = figure.add_subplot(rows, columns, place + 1)
        series = segments[name]["series"]
        times = [dt.datetime.fromtimestamp(p[0] / 1000, dt.UTC) for p in series]
        axes.step(times, [p[3] for p in series], where="post", color=COLOURS["members"])
        if segments[name]["min_size"]:
            axes.axhline(segments[name]["min_size"], color="#cc0000", linestyle="--", linewidth=1)
        axes.set_title(name, fontsize=10)
        axes.tick_params(axis="x", labelsize=7, rotation=30)
        axes.set_ylim(bottom=0)
    if not names:
        figure.add_subplot().text(0.5, 0.5, "no segment changes", ha="center")
    return _svg(figure)


def segment_lift(segments: dict) -> str:
    """Each segment's lift over the base rate, with a bootstrap-by-user interval."""
    rows = [
        (name, s["lift"]["ratio"], tuple(s["lift"]["ci95"]), "#333333")
        for name, s in segments.items()
        if s["lift"]["ratio"] is not None
    ]
    label = "conversion after entering / after any visit, 95% bootstrap by user"
    return _forest(rows, 1, label, "D")


def _classifiers(models: dict) -> list[str]:
    return [name for name, m in models.items() if (m["summary"].get("series") or {}).get("points")]


def model_quality(models: dict) -> str:
    """Each classifier's progressive ROC AUC and log loss over event time, against the
    baselines, with its drifts."""
    names = _classifiers(models)
    figure = _figure(9, 2.6 * max(len(names), 1))
    for row, name in enumerate(names):
        summary = models[name]["summary"]
        fields = summary["series"]["fields"]
        points = [dict(zip(fields, point, strict=True)) for point in summary["series"]["points"]]
        times = [dt.datetime.fromtimestamp(p["at"] / 1000, dt.UTC) for p in points]
        auc = figure.add_subplot(len(names), 2, 2 * row + 1)
        auc.plot(times, [p["roc_auc"] for p in points], label="model")
        auc.plot(times, [p["version_roc_auc"] for p in points], label="this version", alpha=0.6)
        auc.plot(times, [p["views_roc_auc"] for p in points], label="views baseline")
        auc.axhline(0.5, color="#999999", linewidth=1, linestyle=":")
        auc.set_title(f"{name}: ROC AUC", fontsize=10)
        loss = figure.add_subplot(len(names), 2, 2 * row + 2)
        loss.plot(times, [p["log_loss"] for p in points], label="model")
        loss.plot(times, [p["majority_log_loss"] for p in points], label="base rate")
        loss.plot(times, [p["views_log_loss"] for p in points], label="views baseline")
        loss.set_title(f"{name}: log loss", fontsize=10)
        for axes in (auc, loss):
            for at in summary.get("drifts") or ():
                axes.axvline(dt.datetime.fromtimestamp(at / 1000, dt.UTC), color="#cc0000")
            axes.tick_params(axis="x", labelsize=7, rotation=30)
            axes.legend(fontsize=7)
    if not names:
        figure.add_subplot().text(0.5, 0.5, "no classifier enabled", ha="center")
    return _svg(figure)


def calibration(models: dict) -> str:
    """Each classifier's observed rate against its mean prediction, per tenth."""
    figure = _figure(5, 4)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="#999999", linestyle=":", label="perfect")
    for name in _classifiers(models):
        bins = [b for b in models[name]["summary"]["calibration"] if b["examples"]]
        axes.plot([b["mean_p"] for b in bins], [b["rate"] for b in bins], "o-", label=name)
    axes.set_xlabel("mean predicted probability")
    axes.set_ylabel("observed rate")
    axes.legend(fontsize=8)
    return _svg(figure)


def served_intent(served: dict) -> str:
    """ROC AUC of the intent scores served at the k-th event, against the offline reference."""
    figure = _figure(6, 3.2)
    axes = figure.add_subplot()
    points = [(int(k), f) for k, f in served["by_event"].items() if f.get("auc") is not None]
    for k, found in points:
        low, high = found["ci95"]
        axes.errorbar(
            k, found["auc"], yerr=[[found["auc"] - low], [high - found["auc"]]], fmt="o",
            color=COLOURS["treatment"], capsize=3,
        )  # fmt: skip
    offline = (served.get("reference_by_event") or {}).get("by_event", {})
    marks = [(int(k), f["auc"]) for k, f in offline.items() if f.get("auc") is not None]
    if marks:
        axes.plot(
            [k + 0.15 for k, _ in marks], [a for _, a in marks], "s", color="#cc0000",
            label="offline reference at the same event",
        )  # fmt: skip
    reference = served.get("reference")
    if reference:
        axes.axhline(
            reference["auc"], color="#cc0000", linestyle="--", linewidth=1,
            label="offline reference at close",
        )  # fmt: skip
    if marks or reference:
        axes.legend(fontsize=8)
    axes.axhline(0.5, color="#999999", linewidth=1, linestyle=":")
    axes.set_xticks([k for k, _ in points] or [1])
    axes.set_xlabel("event of the session the score was served at")
    axes.set_ylabel("ROC AUC (95% bootstrap by user)")
    return _svg(figure)


def bias_rates(bias: dict) -> str:
    """The rate of users sent a trigger, per group of each attribute; flagged groups red."""
    names = [a for a, e in bias["attributes"].items() if e["rates"]["trigger_rate"]["by_group"]]
    figure = _figure(9, 2.4 * max((len(names) + 1) // 2, 1))
    minimum = bias["settings"]["min_ratio"]
    for place, attribute in enumerate(names):
        rate = bias["attributes"][attribute]["rates"]["trigger_rate"]
        groups = sorted(rate["by_group"])
        axes = figure.add_subplot(max((len(names) + 1) // 2, 1), 2, place + 1)
        top = max(rate["by_group"].values())
        colours = [
            "#cc0000" if top and rate["by_group"][g] < minimum * top else COLOURS["treatment"]
            for g in groups
        ]
        axes.bar(groups, [100 * rate["by_group"][g] for g in groups], color=colours)
        axes.axhline(100 * minimum * top, color="#999999", linestyle="--", linewidth=1)
        axes.set_title(f"sent a trigger (%), by {attribute}", fontsize=10)
        axes.tick_params(axis="x", labelsize=7, rotation=30)
    if not names:
        figure.add_subplot().text(0.5, 0.5, "no group attribute to audit", ha="center")
    return _svg(figure)


# The figures: id -> (the report.json key of its numbers, its title, how it is drawn).
PLOTS = {
    "trigger_rates": ("triggers", "Conversion of triggered and held-out users", trigger_rates),
    "trigger_differences": ("triggers", "What each trigger changed", trigger_differences),
    "segment_sizes": ("segments", "Segment members over event time", segment_sizes),
    "segment_lift": ("segments", "Segment lift over the base rate", segment_lift),
    "model_quality": ("models", "Model quality over event time (drifts in red)", model_quality),
    "calibration": ("models", "Calibration of the classifiers", calibration),
    "served_intent": ("served_intent", "Purchase intent as served", served_intent),
    "bias_rates": ("bias", "Triggers by group (below the dashed line: flagged)", bias_rates),
}

STYLE = """
body { font-family: sans-serif; max-width: 60rem; margin: 2rem auto; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
td, th { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }
td:first-child, th:first-child { text-align: left; }
figure { margin: 1rem 0; } figure svg { max-width: 100%; height: auto; }
figcaption { font-weight: bold; margin-bottom: 0.5rem; }
.note { color: #555; font-size: 0.9rem; }
"""


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _percent(rate) -> str:
    return "-" if rate is None else f"{100 * rate:.1f}%"


def _bias_section(bias: dict, figure) -> list[str]:
    parts: list[str] = []
    settings = bias["settings"]
    parts.append(
        "<p class='note'>Per group of each attribute the users carry (Fairlearn's "
        "MetricFrame): the share of users sent a trigger (of those who allow marketing), of "
        "users in each segment, and the purchase-intent score at a session's first event. "
        f"A rate below {100 * settings['min_ratio']:.0f}% of the highest group's is flagged "
        f"(groups of fewer than {settings['min_group']} users are not). Sensitive fields "
        f"({', '.join(settings['sensitive']) or 'none'}) are only audited: no rule may read "
        "them.</p>"
    )
    if bias["not_audited"]:
        missing = html.escape(", ".join(bias["not_audited"]))
        parts.append(f"<p>Not audited, the events carry no value: {missing}.</p>")
    if bias["attributes"]:
        parts.append(figure("bias_rates"))
        rows = []
        for attribute, entry in bias["attributes"].items():
            for metric, rate in entry["rates"].items():
                rows.append(
                    [attribute, metric, len(rate["by_group"]),
                     rate.get("demographic_parity_ratio"),
                     rate.get("demographic_parity_difference")]
                )  # fmt: skip
            intent = entry.get("intent") or {}
            if "equalized_odds_difference" in intent:
                rows.append(
                    [attribute, "purchase_intent (equalized odds difference)",
                     len(intent["by_group"]), None, intent["equalized_odds_difference"]]
                )  # fmt: skip
        header = ["attribute", "measure", "groups", "parity ratio", "difference"]
        parts.append(_table(header, rows))
        flags = bias["flags"]
        parts.append(
            "<ul>" + "".join(f"<li>{html.escape(f['sentence'])}</li>" for f in flags) + "</ul>"
            if flags
            else "<p>No group flagged.</p>"
        )
    return parts


def render(report: dict, title: str) -> str:
    """The page for a report's numbers (``report.json``)."""
    parts = [f"<h1>{html.escape(title)}</h1>"]
    parts.append(f"<p class='note'>{html.escape(report['about'])}</p>")

    def figure(plot: str) -> str:
        key, caption, draw = PLOTS[plot]
        return (
            f"<figure data-plot='{plot}'><figcaption>{html.escape(caption)}</figcaption>"
            f"{draw(report[key])}</figure>"
        )

    unavailable = report.get("unavailable") or {}

    def missing(section: str) -> bool:
        if section in unavailable:
            parts.append(f"<p>{html.escape(unavailable[section])}</p>")
            return True
        return False

    triggers = report["triggers"]
    parts.append("<h2>Triggers as A/B tests</h2>")
    parts.append(
        "<p class='note'>The unit is the user: governance holds a user out of a pattern for "
        "good, so all of a user's triggers of a pattern are in one group. A user converted "
        "when a purchase followed one of them within the attribution window.</p>"
    )
    if missing("triggers"):
        pass
    elif triggers:
        parts.append(figure("trigger_rates"))
        parts.append(figure("trigger_differences"))
        rows = []
        for name, found in triggers.items():
            by_user = found["by_user"]
            rows.append(
                [
                    name,
                    found["matches"],
                    by_user["treatment"]["n"],
                    _percent(by_user["treatment"]["rate"]),
                    by_user["control"]["n"],
                    _percent(by_user["control"]["rate"]),
                    by_user["lift"],
                    _percent(by_user["mde"]),
                ]
            )
        header = ["pattern", "matches", "treated users", "converted", "held-out users"]
        parts.append(_table(header + ["converted", "lift", "detectable change"], rows))
        parts.append(
            "<ul>"
            + "".join(
                f"<li><b>{html.escape(name)}</b>: {html.escape(found['by_user']['sentence'])}</li>"
                for name, found in triggers.items()
            )
            + "</ul>"
        )
    else:
        parts.append("<p>No patterns in the config: no triggers to test.</p>")

    segments = report["segments"]
    parts.append("<h2>Segments</h2>")
    if segments:
        parts.append(figure("segment_sizes"))
        parts.append(figure("segment_lift"))
        rows = [
            [
                name,
                found["entries"],
                found["exits"],
                found["series"][-1][3] if found["series"] else 0,
                found["min_size"],
                _percent(found["lift"]["rate"]),
                _percent(found["lift"]["base_rate"]),
                found["lift"]["ratio"],
                "-"
                if not found["lift"]["ci95"]
                else "{:.2f} to {:.2f}".format(*found["lift"]["ci95"]),
            ]
            for name, found in segments.items()
        ]
        header = ["segment", "entries", "exits", "members at the end", "min_size"]
        parts.append(_table(header + ["converted", "base rate", "lift", "95% interval"], rows))
        parts.append(
            "<p class='note'>Members count entries less exits; a user whose state expired "
            "(timeline.retention) leaves no exit. Lift: conversion within the attribution "
            "window after entering, over conversion after any visit; its interval resamples "
            "users, so one user's repeated visits move together.</p>"
        )
    else:
        parts.append("<p>No segments in the config.</p>")

    models = report["models"]
    parts.append("<h2>Models</h2>")
    if models:
        parts.append(
            "<p class='note'>Progressive validation: each example is scored before it is "
            "learned. The views baseline ranks by the views so far; the base rate predicts the "
            "running share of positives.</p>"
        )
        parts.append(figure("model_quality"))
        parts.append(figure("calibration"))
        rows = []
        for name, found in models.items():
            summary = found["summary"]
            metrics = summary.get("metrics") or {}
            shown = ", ".join(
                f"{metric} {value:.4g}"
                for metric, value in sorted(metrics.items())
                if isinstance(value, float)
            )
            rows.append(
                [name, summary.get("kind"), summary["samples"], shown, len(found["drifts"])]
            )
        parts.append(_table(["model", "kind", "samples", "final metrics", "drifts"], rows))
    else:
        parts.append("<p>No models enabled in the config.</p>")
    served = report["served_intent"]
    parts.append("<h2>Purchase intent as served</h2>")
    if missing("served_intent"):
        pass
    elif served["by_event"]:
        parts.append(
            "<p class='note'>The score the purchase_intent model gave the session at its k-th "
            "event (before any purchase in it; the model had learned only from sessions closed "
            "by then), against whether the session went on to buy, on the last "
            f"{served['test_sessions']:,} of {served['sessions']:,} sessions by start. The "
            "references are logistic regressions trained offline on the earlier sessions: "
            "one on what the online model learned, scored on the same sessions at the same "
            "event (the fair comparison); one on whole sessions, scored at close, where a "
            "buying session stops at its purchase and another is whole, so its length "
            "gives the answer away.</p>"
        )
        parts.append(figure("served_intent"))
        rows = [
            [f"event {k}", f["sessions_reaching"], f.get("positives"), f.get("auc"),
             "-" if not f.get("ci95") else "{:.3f} to {:.3f}".format(*f["ci95"])]
            for k, f in served["by_event"].items()
        ]  # fmt: skip
        offline = (served.get("reference_by_event") or {}).get("by_event", {})
        rows += [
            [f"offline reference, event {k}", f["sessions_reaching"], None, f["auc"], "-"]
            for k, f in offline.items()
        ]
        if served["reference"]:
            reference = served["reference"]
            rows.append(
                ["offline reference, at close", reference["test_sessions"], None,
                 reference["auc"], "-"]
            )  # fmt: skip
        parts.append(_table(["scored at", "sessions", "buying", "ROC AUC", "95% interval"], rows))
    else:
        parts.append("<p>The purchase_intent model is not enabled: no scores to check.</p>")
    parts.append("<h2>Bias audit</h2>")
    if not missing("bias"):
        parts.extend(_bias_section(report["bias"], figure))
    body = "\n".join(parts)
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    )
