"""Two result sets side by side (`mmcl eval --compare A B`): tasks paired by name, else by task type and data.

Names need not agree: a training run's periodic evaluation names its tasks in its config (e.g. `mine`), while
`mmcl eval` uses `--name` or the default. A task left unpaired by name is paired with the one task on the other
side that measures the same thing on the same data: task type, modalities, number of items and class names.
"""

from __future__ import annotations

from mmcl.errors import UserError
from mmcl.eval.report import flatten
from mmcl.eval.summary import fmt


def signature(result: dict) -> tuple:
    """What a result measured on which data, independent of its name and of how the data was stored."""
    modalities = result.get("modalities") or [result["modality"]]
    return (result["task"], tuple(sorted(modalities)), result["dataset"]["num_items"],
            tuple(result.get("classnames") or ()))


def describe(result: dict) -> str:
    task, modalities, items, classnames = signature(result)
    return f"{task} on {'+'.join(modalities)}, {items} items" + (f", {len(classnames)} classes" if classnames else "")


def pair(a: list[dict], b: list[dict]) -> list[tuple[dict, dict, bool]]:
    """(A result, B result, paired by name) for each pair: same names first; then, among the rest, tasks whose
    signature occurs exactly once on each side (several alike would be a guess)."""
    by_name = {r["name"]: r for r in b}
    pairs = [(r, by_name[r["name"]], True) for r in a if r["name"] in by_name]
    named = {r["name"] for r, _, _ in pairs}
    rest_a = [r for r in a if r["name"] not in named]
    rest_b = [r for r in b if r["name"] not in named]
    for r in rest_a:
        same_a = [x for x in rest_a if signature(x) == signature(r)]
        same_b = [x for x in rest_b if signature(x) == signature(r)]
        if len(same_a) == 1 and len(same_b) == 1:
            pairs.append((r, same_b[0], False))
    return pairs


def _difference(left, right) -> str:
    delta = right - left
    return f"{delta:+d}" if isinstance(delta, int) else f"{delta:+.4f}"


def _notes(left: dict, right: dict) -> list[str]:
    """Why two paired numbers may differ other than by the model: other data, or other prompts."""
    notes = []
    if signature(left) != signature(right):
        notes.append(f"note: {left['name']} ran on other data: A {describe(left)}; B {describe(right)}")
    if "templates" in left and "templates" in right and left["templates"] != right["templates"]:
        notes.append(f"note: {left['name']} used other templates: A {len(left['templates'])} "
                     f"({left.get('templates_source', 'origin not recorded')}); B {len(right['templates'])} "
                     f"({right.get('templates_source', 'origin not recorded')})")
    return notes


def overlap(left: dict, right: dict, key: str) -> str | None:
    """Whether the two results' bootstrap intervals of metric `key` overlap ("yes"/"no"); None unless both have
    one. Disjoint intervals are a hint, not a test, that the difference is more than resampling noise."""
    a, b = left.get("intervals", {}).get(key), right.get("intervals", {}).get(key)
    if not (a and b):
        return None
    return "yes" if a[0] <= b[1] and b[0] <= a[1] else "no"


def _interval_notes(left: dict, right: dict) -> list[str]:
    """Intervals made at different confidence levels do not compare as like with like."""
    a, b = left.get("bootstrap"), right.get("bootstrap")
    if a and b and a["level"] != b["level"]:
        return [f"note: {left['name']} intervals are at different levels: A {a['level']}, B {b['level']}"]
    return []


def compare(a: list[dict], b: list[dict], names: tuple[str, str]) -> str:
    """Every scalar metric of the paired tasks, side by side with the difference B − A; rows carry A's task name.
    When both results of a pair have bootstrap intervals, a last column says whether a metric's intervals overlap."""
    header, rows, notes, only = [f"A: {names[0]}", f"B: {names[1]}"], [], [], 0
    pairs = pair(a, b)
    for left, right, by_name in pairs:
        if not by_name:
            header.append(f"paired by task and data: A {left['name']!r} with B {right['name']!r} ({describe(left)})")
        notes += _notes(left, right) + _interval_notes(left, right)
        lm, rm = flatten(left["metrics"]), flatten(right["metrics"])
        rows += [(f"{left['name']}/{k}", v, rm[k], overlap(left, right, k)) for k, v in lm.items() if k in rm]
        only += len(set(lm) ^ set(rm))
    if not rows:
        raise UserError(f"{names[0]} and {names[1]} share no metrics: no task has the same name, or the same task "
                        f"type and data, on both sides (A: {'; '.join(describe(r) for r in a)}; B: "
                        f"{'; '.join(describe(r) for r in b)})")
    paired = [r for p in pairs for r in p[:2]]
    only += sum(len(flatten(r["metrics"])) for r in a + b if not any(r is p for p in paired))
    width = max(len(k) for k, *_ in rows)
    with_overlap = any(o is not None for *_, o in rows)  # the column only appears when it says something
    table = [f"{'metric':<{width}}  {'A':>10}  {'B':>10}  {'B - A':>10}" + ("  intervals overlap" if with_overlap
                                                                            else "")]
    table += [f"{k:<{width}}  {fmt(x):>10}  {fmt(y):>10}  {_difference(x, y):>10}"
              + (f"  {o or '—'}" if with_overlap else "") for k, x, y, o in rows]
    if only:
        table.append(f"({only} metrics appear in only one file)")
    return "\n".join(header + table + notes)
