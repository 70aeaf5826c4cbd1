"""An exported model scored by LAION's CLIP_benchmark, beside `mmcl eval`'s result on the same shards.

`mmcl export RUN --format open_clip --output EXPORTED` writes an open_clip folder; this script loads it with
open_clip, runs CLIP_benchmark's own zero-shot classification (`clip_benchmark.metrics.zeroshot_classification`)
on an evaluation shard set written by `mmcl shards prepare --class-folders`, and prints its accuracy next to the
result JSON of `mmcl eval RUN --data SHARDS --output mmcl.json`. The numbers must agree.

CLIP_benchmark is not an mmcl dependency (its command line imports captioning packages we do not need); install it
beside the project without its dependencies: `pip install --no-deps --target /tmp/cb clip_benchmark requests
urllib3 idna certifi charset_normalizer`, then

    PYTHONPATH=/tmp/cb python benchmarks/export_clip_benchmark.py EXPORTED SHARDS mmcl.json

CLIP_benchmark reads `wds/` data as test/0.tar ... test/N.tar with test/nshards.txt; the script links mmcl's
shards into that layout in a temporary folder. Its `accuracy` helper calls float() on a one-element array, which
numpy 2 refuses; it is replaced by the same computation with `.item()`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import open_clip
import torch
from clip_benchmark.datasets.builder import build_dataset
from clip_benchmark.metrics import zeroshot_classification


def accuracy(output: torch.Tensor, target: torch.Tensor, topk=(1,)) -> list[float]:
    """CLIP_benchmark 1.6.2's top-k accuracy, with `.item()` in place of float() of an array."""
    pred = output.topk(max(topk), 1, True, True)[1].t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    return [correct[:k].reshape(-1).float().sum().item() / len(target) for k in topk]


def clip_benchmark_layout(shards: Path, folder: Path) -> Path:
    """`folder` in CLIP_benchmark's wds layout, its tars linked to mmcl's shards."""
    tars = sorted(shards.glob("*.tar"))
    (folder / "test").mkdir(parents=True)
    for index, tar in enumerate(tars):
        (folder / "test" / f"{index}.tar").symlink_to(tar.resolve())
    (folder / "test" / "nshards.txt").write_text(str(len(tars)))
    for name in ("classnames.txt", "zeroshot_classification_templates.txt"):
        (folder / name).write_text((shards / name).read_text())
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exported", type=Path, help="Folder written by mmcl export --format open_clip.")
    parser.add_argument("shards", type=Path, help="Evaluation shards with classnames.txt and templates.")
    parser.add_argument("mmcl_result", type=Path, help="Result JSON of mmcl eval on the same shards.")
    args = parser.parse_args()
    zeroshot_classification.accuracy = accuracy
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{args.exported}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{args.exported}")
    with tempfile.TemporaryDirectory() as tmp:
        dataset = build_dataset("wds/eval", root=str(clip_benchmark_layout(args.shards, Path(tmp))),
                                transform=preprocess, split="test", download=False)
        loader = torch.utils.data.DataLoader(dataset.batched(64), batch_size=None, num_workers=0)
        theirs = zeroshot_classification.evaluate(model.eval(), loader, tokenizer, dataset.classes,
                                                  dataset.templates, "cpu", amp=False)
    ours = json.loads(args.mmcl_result.read_text())["metrics"]
    print(f"{'metric':<24}{'mmcl eval':>12}{'CLIP_benchmark':>16}")
    for mine, peer in (("top1", "acc1"), ("top5", "acc5"), ("mean_per_class_recall", "mean_per_class_recall")):
        print(f"{mine:<24}{ours[mine]:>12.6f}{theirs[peer]:>16.6f}")


if __name__ == "__main__":
    main()
