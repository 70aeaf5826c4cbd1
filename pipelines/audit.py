"""`mmcl audit`: find poisoned (backdoor) samples in a training shard set from a trained model's embeddings.

    mmcl audit runs/demo --data shards/poisoned            # SHARDS/audit.parquet, SHARDS/audit/report.md
    mmcl audit runs/demo --data shards/poisoned --poisoned poisoned.json --report audit/ --k 20
    torchrun --nproc_per_node 8 -m pipelines.cli audit CHECKPOINT --data SHARDS   # each process embeds 1/8

Load the model ▶ embed every sample's media and first caption, shared among processes as `mmcl eval` shares its
data ▶ k nearest neighbours in chunks, shared among processes too ▶ scores ▶ on the main process: Parquet, report,
and with the poison record the detection metrics.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmcl.errors import UserError

PARQUET = "audit.parquet"
REPORT_DIR = "audit"
FIXED_KS = (10, 50, 100, 1000)  # precision/recall@k beside k = the number of poisoned samples
TOP = 20  # samples per score in the report


def register(parser) -> None:
    parser.description = (
        "Score every sample of a shard set for how likely it is poisoned (a backdoor trigger with a target "
        "caption), from a trained model's embeddings: how sparse its neighbourhood is (the mean distance to its k "
        "nearest neighbours, knn; local intrinsic dimensionality, lid; dimensionality-aware outlier score, dao), for "
        "the media and for the captions, and the media-caption similarity. Higher is more suspicious. Writes a "
        "Parquet file of scores and ranks and a Markdown report; with the poison record, precision/recall@k and "
        "AUROC of each score.")
    parser.add_argument("model", metavar="MODEL", help="What `mmcl eval` takes: a checkpoint folder, a training run "
                        "folder (its best checkpoint, else its latest), a model YAML, open_clip:NAME (with --weights) "
                        "or a built-in model name.")
    parser.add_argument("--data", required=True, help="The shard folder to audit (as `mmcl shards` writes it).")
    parser.add_argument("--weights", help="`ema`: a run's moving average of the weights; a .safetensors file for "
                        "open_clip:NAME.")
    parser.add_argument("--modality", choices=("image", "audio"), help="The media paired with captions (default: "
                        "image where the model has an image tower and the shards' first samples hold images, else "
                        "audio).")
    parser.add_argument("--output", help=f"Parquet file of per-sample scores (default SHARDS/{PARQUET}).")
    parser.add_argument("--report", metavar="DIR", help=f"Folder for report.md, thumbnails/ and metrics.json "
                        f"(default: {REPORT_DIR}/ beside the Parquet file).")
    parser.add_argument("--poisoned", metavar="JSON", help="The poison record (`mmcl shards poison`'s poisoned.json) "
                        "to measure the scores against; default SHARDS/poisoned.json where it exists.")
    parser.add_argument("--k", type=int, default=10, help="Neighbours per sample (default 10). More poisoned "
                        "near-copies than k among the references clump at the bottom of knn and lid instead; "
                        "--reference-size keeps them rare among the references.")
    parser.add_argument("--reference-size", type=int, metavar="M", help="Find neighbours among a seeded sample of M "
                        "samples (seed 0) instead of all: time O(N*M*d) instead of O(N^2*d), for millions of samples.")
    parser.add_argument("--chunk", type=int, default=4096, help="Rows per block of the neighbour search: memory "
                        "O(chunk^2) on top of the embeddings (default 4096).")
    parser.add_argument("--batch-size", type=int, default=64, help="Samples a loader hands over at a time (default "
                        "64; the scores do not depend on it).")
    parser.add_argument("--workers", type=int, default=0, help="Decoding worker processes (default 0).")
    parser.add_argument("--device", default="cpu", help="Torch device (default cpu; under torchrun each process "
                        "takes its own).")
    parser.set_defaults(func=run)


def run(args) -> int:
    data = Path(args.data)
    if not data.is_dir():
        raise UserError(f"--data {data}: no such shard folder")
    if args.k < 1 or args.chunk < 1:
        raise UserError(f"--k {args.k} and --chunk {args.chunk}: both must be at least 1")
    if args.reference_size is not None and args.reference_size <= args.k:
        raise UserError(f"--reference-size {args.reference_size}: must exceed --k {args.k}")
    poisoned_path = Path(args.poisoned) if args.poisoned else data / "poisoned.json"
    if args.poisoned and not poisoned_path.is_file():
        raise UserError(f"--poisoned {poisoned_path}: no such file")
    output = Path(args.output) if args.output else data / PARQUET
    report = Path(args.report) if args.report else output.parent / REPORT_DIR
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from mmcl.training.launch import process_group

        with process_group() as state:
            audited = audit(args, data, state.process_index, state.num_processes, str(state.device))
        if not state.is_main_process:
            return 0  # the main process writes
    else:
        audited = audit(args, data, 0, 1, args.device)
    write(args, data, *audited, output, report, poisoned_path if poisoned_path.is_file() else None)
    return 0


def audit(args, data: Path, rank: int, world_size: int, device: str):
    """(pairs, scores, model description, modality): every process embeds its share of the shards and searches its
    share of the neighbours; all get everything."""
    import torch

    from mmcl.audit.embedding import embed_pairs
    from mmcl.audit.neighbours import reference_sample
    from mmcl.audit.scores import suspicion_scores
    from mmcl.audit.shards import AuditedShards
    from mmcl.eval.embed import Loading
    from mmcl.eval.models import describe_model, load_eval_model

    model, transforms, tokenizer, description = load_eval_model(args.model, args.weights)
    model.to(device).eval()
    modality = args.modality or AuditedShards(data).media_modality(model.modalities)
    loading = Loading(torch.device(device), args.batch_size, args.workers, rank=rank, world_size=world_size)
    pairs = embed_pairs(model, transforms.eval, tokenizer, AuditedShards(data), modality, loading)
    count = len(pairs.keys)
    if count <= args.k:
        raise UserError(f"{data}: {count} usable samples; --k {args.k} needs more than k")
    scores = suspicion_scores(pairs.media, pairs.text, modality, args.k, reference_sample(count, args.reference_size),
                              args.chunk, device, rank, world_size)
    return pairs, scores, describe_model(model, description), modality


def write(args, data: Path, pairs, scores: dict, model_info: dict, modality: str, output: Path, report: Path,
          poisoned_path: Path | None) -> None:
    """The Parquet file, the report and, with the poison record, the detection metrics."""
    import torch

    from mmcl.audit.metrics import detection_metrics
    from mmcl.audit.report import score_table, write_parquet, write_report
    from mmcl.audit.shards import AuditedShards, read_poisoned

    count = len(pairs.keys)
    references = count if args.reference_size is None else min(count, args.reference_size)
    poisoned = metrics = None
    header = [f"- model: {model_info['source']} ({model_info.get('weights', 'weights of the checkpoint')})",
              f"- data: {data}, {modality}-text pairs, first caption of each sample",
              f"- skipped: {', '.join(f'{n} {r}' for r, n in sorted(pairs.skipped.items())) or 'none'}",
              f"- neighbours: k = {args.k} among " + (f"all {count} samples" if references == count else
                                                      f"a sample of {references} (seed 0)"),
              "- every score: higher = more suspicious; see README, `mmcl audit`"]
    if poisoned_path is not None:
        listed = read_poisoned(poisoned_path)
        poisoned = torch.tensor([key in listed for key in pairs.keys], dtype=torch.bool)
        if listed and not poisoned.any():
            raise UserError(f"{poisoned_path}: none of its {len(listed)} poisoned samples is among the {count} "
                            f"audited samples of {data}; is it this shard set's record?")
        metrics = detection_metrics(scores, poisoned, FIXED_KS)
        header.append(f"- poisoned: {int(poisoned.sum())} of the audited samples as {poisoned_path} lists them "
                      f"({len(listed) - int(poisoned.sum())} listed but not audited: skipped)")
    write_parquet(score_table(pairs.keys, scores, poisoned), output)
    top = {pairs.keys[i] for s in scores.values() for i in torch.sort(s, descending=True, stable=True).indices[:TOP]
           .tolist()}
    path = write_report(report, header, metrics, pairs.keys, scores, poisoned, AuditedShards(data).items(top), TOP)
    print(f"audited {count} samples" + (f", skipped {sum(pairs.skipped.values())}: {pairs.skipped}"
                                         if pairs.skipped else ""))
    for name, values in (metrics or {}).items() if poisoned is not None and poisoned.any() else ():
        at = f"precision@{int(poisoned.sum())}"
        print(f"{name}: AUROC {values['auroc']:.3f}, {at} {values[at]:.3f}")
    print(f"scores: {output}\nreport: {path}")
