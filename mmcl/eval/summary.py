"""What people read about a result: the console headline and the Markdown summary, each with the rates a
number is read against (uniform chance, the majority class, random retrieval) and what was skipped; the summary
also shows each metric's bootstrap interval when the result has one."""

from __future__ import annotations

from mmcl.eval.report import flatten

CLASSIFIERS = {"zeroshot_classification": "zero-shot", "linear_probe": "linear-probe"}  # task → headline prefix


def fmt(value) -> str:
    """Counts as integers, rates to four decimals, a missing value as a dash."""
    if value is None:
        return "—"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def with_interval(result: dict, key: str, value) -> str:
    """`value`, followed by its bootstrap interval `[low, high]` when the result has one for `key`."""
    bounds = result.get("intervals", {}).get(key)
    return fmt(value) + (f" [{bounds[0]:.4f}, {bounds[1]:.4f}]" if bounds else "")


def intervals_line(result: dict) -> str | None:
    """How the result's intervals were made, in words; None for a result without them."""
    b = result.get("bootstrap")
    if not b:
        return None
    return (f"[low, high]: {100 * b['level']:g}% percentile-bootstrap interval over the items, "
            f"{b['samples']} resamples, seed {b['seed']}")


def chance(result: dict) -> str | None:
    """The baselines of a classification or retrieval result, in words; None for a task without one."""
    m = result["metrics"]
    if result["task"] in CLASSIFIERS and "mAP" in m:
        return (f"prevalence mAP {m['prevalence_mAP']:.4f} (the mean share of positive items over the "
                f"{m['num_scored_classes']} classes with any, which a random ranking's AP approaches; "
                f"{m['labels_per_item']:.2f} classes per item)")
    if result["task"] in CLASSIFIERS:
        counts = m["class_counts"]
        largest = counts.index(max(counts))
        return (f"uniform chance {m['chance_top1']:.4f} (1/{m['num_classes']} classes), majority class "
                f"{m['majority_top1']:.4f} (always answering {result['classnames'][largest]!r}: {counts[largest]} "
                f"of {m['num_samples']} items)")
    if "chance_recall@1" in m:
        return f"retrieval chance: recall@1 {m['chance_recall@1']:.4f} (1/{m['num_items']} items)"
    return None


def skipped(result: dict) -> str | None:
    """One line counting the items left out, by reason; None when none were."""
    reasons = result["dataset"].get("skipped") or {}
    if not reasons:
        return None
    total = sum(reasons.values())
    return (f"skipped {total} of {result['dataset']['num_items'] + total} items: "
            + ", ".join(f"{n} {why}" for why, n in sorted(reasons.items())))


def headline(result: dict) -> str:
    """One console line of the main numbers with their baselines."""
    m = result["metrics"]
    trained = (f" (trained on {m['num_train']} items, weight decay {m['weight_decay']:g})"
               if result["task"] == "linear_probe" else "")
    if result["task"] in CLASSIFIERS and "mAP" in m:
        return (f"{CLASSIFIERS[result['task']]} mAP: {m['mAP']:.4f} over {m['num_scored_classes']} of "
                f"{m['num_classes']} classes, micro AP {m['micro_ap']:.4f}, on {m['num_samples']} "
                f"{result['modality']} items (multi-label){trained}; {chance(result)}")
    if result["task"] in CLASSIFIERS:
        top5 = f"{m['top5']:.4f}" if m["top5"] is not None else "undefined (<5 classes)"
        return (f"{CLASSIFIERS[result['task']]} top-1: {m['top1']:.4f}, top-5 {top5}, mean per-class recall "
                f"{m['mean_per_class_recall']:.4f} on {m['num_samples']} {result['modality']} items, "
                f"{m['num_classes']} classes{trained}; {chance(result)}")
    if result["task"] == "backdoor":
        return (f"attack success rate {m['attack_success_rate']:.4f} ({result['trigger']['kind']} trigger, target "
                f"{result['target']!r}, {m['num_attacked']} attacked images), against {m['clean_target_rate']:.4f} of "
                f"them sent there without it; clean top-1 {m['clean_top1']:.4f}")
    if result["task"] == "geometry":
        pairs = [k for k in m if "-" in k]
        return "; ".join(f"{p}: gap {m[p]['modality_gap']:.3f}, separability {m[p]['linear_separability']:.3f}"
                         for p in pairs)
    recalls = "; ".join(f"{k}: R@1 {v['recall@1']:.4f}" for k, v in m.items()
                        if isinstance(v, dict) and "recall@1" in v)
    return f"{recalls}; {chance(result)}"


def markdown(results: list[dict], model: str) -> str:
    """A summary people read: per task its data, baselines, one table of scalar metrics, the prompts and the
    classes it does worst on."""
    lines = [f"# Evaluation of `{model}`", ""]
    for r in results:
        lines += [f"## {r['name']} ({r['task']})", "", f"Data: `{r['dataset']['path']}` "
                  f"({r['dataset']['format']}, {r['dataset']['num_items']} items)", ""]
        for line in (skipped(r), chance(r), intervals_line(r)):
            if line:
                lines += [line[0].upper() + line[1:] + ".", ""]
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {with_interval(r, k, v)} |" for k, v in flatten(r["metrics"]).items()]
        if r["metrics"].get("top5_note"):
            lines += ["", f"top-5: {r['metrics']['top5_note']}."]
        if "templates" in r:
            lines += ["", f"Prompts: {len(r['classnames'])} class names × {len(r['templates'])} templates "
                      f"({r['templates_source']}): " + ", ".join(f"`{t}`" for t in r["templates"])]
        if "per_class_recall" in r["metrics"]:
            recalls, counts = r["metrics"]["per_class_recall"], r["metrics"]["class_counts"]
            worst = sorted((v, c, n) for c, v, n in zip(r["classnames"], recalls, counts) if v is not None)[:5]
            lines += ["", "Lowest per-class accuracy: " + ", ".join(f"{c} {v:.3f} (n={n})" for v, c, n in worst)]
        if "per_class_ap" in r["metrics"]:
            aps, counts = r["metrics"]["per_class_ap"], r["metrics"]["class_positives"]
            worst = sorted((v, c, n) for c, v, n in zip(r["classnames"], aps, counts) if v is not None)[:5]
            lines += ["", "Lowest per-class AP: " + ", ".join(f"{c} {v:.3f} (positives={n})" for v, c, n in worst)]
            if r["metrics"]["classes_without_positives"]:
                lines += ["", f"{r['metrics']['classes_without_positives']} class(es) without a positive item have "
                          "no AP and are left out of mAP."]
        lines.append("")
    return "\n".join(lines)
