"""`mmcl audit`: chunked k nearest neighbours equal the full-matrix answer, the LID and DAO estimates follow their
formulas, AUROC agrees with scikit-learn, isolated planted samples rank first by knn, lid and dao (a planted clump
last by knn and lid), and the command writes one scored row per readable sample with a report and detection
metrics, the same with two processes as with one."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
import webdataset as wds
from sklearn.metrics import roc_auc_score

from mmcl.audit import auroc, detection_metrics, lid_mle, nearest, ranks, reference_sample, suspicion_scores
from mmcl.audit.embedding import embed_pairs
from mmcl.audit.scores import dao_score
from mmcl.audit.shards import AuditedShards
from mmcl.errors import UserError
from mmcl.eval.embed import Loading
from pipelines.cli import main as mmcl
from tests.shard_factory import write_shards
from tests.train_fixtures import shape_shards


def unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1)


def brute_force(x: torch.Tensor, k: int, references: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The k most similar references of every row from the whole [N, M] matrix, the row itself excluded."""
    similarity = x @ x[references].T
    similarity[torch.arange(len(x))[:, None] == references[None, :]] = -torch.inf
    values, at = similarity.topk(k, dim=1)
    return values, references[at]


@pytest.mark.parametrize("chunk", [1, 4, 7, 37, 100])
@pytest.mark.parametrize("reference_size", [None, 20])
def test_chunked_neighbours_equal_the_full_matrix(chunk, reference_size):
    x = unit(torch.randn(37, 8, generator=torch.Generator().manual_seed(0)))
    references = reference_sample(37, reference_size)
    found = nearest(x, 5, references, chunk=chunk)
    values, index = brute_force(x, 5, references)
    torch.testing.assert_close(found.similarity, values, rtol=0, atol=1e-6)
    assert torch.equal(found.index, index)
    assert not (found.index == torch.arange(37)[:, None]).any()  # never its own neighbour


def test_reference_sample_is_seeded_and_sorted():
    assert torch.equal(reference_sample(50, 10), reference_sample(50, 10))
    assert torch.equal(reference_sample(50, 10), reference_sample(50, 10).sort().values)
    assert torch.equal(reference_sample(50, None), torch.arange(50))
    with pytest.raises(ValueError, match="5 neighbours asked among 5 references"):
        nearest(unit(torch.randn(9, 4)), 5, torch.arange(5))


def test_lid_and_dao_follow_their_formulas():
    r = torch.tensor([[0.1, 0.2, 0.4, 0.8], [0.5, 0.6, 0.6, 0.7], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    k = r.shape[1]
    expected = [-1 / (sum(np.log(r[i, j].item() / r[i, -1].item()) for j in range(k)) / k) for i in range(2)]
    lid = lid_mle(r)
    assert lid[:2].tolist() == pytest.approx(expected, rel=1e-12)
    assert lid[2].item() == 0.0  # duplicates: a point mass

    class Found:  # what dao_score reads: the distances and the neighbours' rows
        index = torch.tensor([[1, 2], [0, 2], [0, 1]])
        distance = torch.tensor([[0.1, 0.3], [0.2, 0.6], [0.4, 1.2]], dtype=torch.float64)

    dimension = torch.tensor([2.0, 3.0, 0.5], dtype=torch.float64)
    kd = [0.3, 0.6, 1.2]
    want = [np.log(np.mean([(kd[q] / kd[o]) ** dimension[q].item() for o in Found.index[q].tolist()]))
            for q in range(3)]
    assert dao_score(Found, dimension).tolist() == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_auroc_matches_scikit_learn_with_ties(seed):
    rng = np.random.default_rng(seed)
    score = rng.integers(0, 4, 60)  # four values: many ties
    labels = rng.random(60) < 0.3
    labels[:2] = [True, False]
    assert auroc(torch.tensor(score), torch.tensor(labels)) == pytest.approx(roc_auc_score(labels, score), abs=1e-12)
    continuous = rng.normal(size=60)
    assert auroc(torch.tensor(continuous), torch.tensor(labels)) == pytest.approx(roc_auc_score(labels, continuous),
                                                                                  abs=1e-12)


def test_auroc_edge_cases_and_ranks():
    assert auroc(torch.ones(6), torch.tensor([1, 0, 1, 0, 0, 0], dtype=torch.bool)) == 0.5  # all tied
    assert auroc(torch.arange(4.0), torch.zeros(4, dtype=torch.bool)) is None
    assert ranks(torch.tensor([0.2, 0.9, 0.2, 0.5])).tolist() == [3, 1, 4, 2]  # ties keep the set's order


def test_isolated_samples_among_clusters_rank_first():
    """Five samples alone, among four tight clusters of 60: sparser than any clean sample and than their own
    neighbourhood, their neighbours far off in every direction, so first by knn, lid and dao."""
    g = torch.Generator().manual_seed(1)
    centres = unit(torch.randn(4, 32, generator=g))
    clusters = unit(centres.repeat_interleave(60, 0) + 0.05 * torch.randn(240, 32, generator=g))
    alone = unit(torch.randn(5, 32, generator=g))
    x = torch.cat([clusters[:100], alone, clusters[100:]])  # planted rows 100..104
    poisoned = torch.zeros(245, dtype=torch.bool)
    poisoned[100:105] = True
    scores = suspicion_scores(x, x, "image", k=10)
    metrics = detection_metrics(scores, poisoned, ks=(10,))
    for name in ("knn_image", "lid_image", "dao_image", "knn_text", "lid_text", "dao_text"):
        assert metrics[name]["precision@5"] == 1.0 and metrics[name]["auroc"] == 1.0, name
        assert set(torch.nonzero(ranks(scores[name]) <= 5).flatten().tolist()) == set(range(100, 105))
    assert metrics["knn_image"]["precision@10"] == 0.5 and metrics["knn_image"]["recall@10"] == 1.0


def test_a_planted_clump_is_the_other_end_of_knn_and_lid():
    """Twenty near-copies varying in two directions (a trigger and a target caption repeated, more than k of them)
    among 300 samples spread in 32 dimensions: denser and of lower dimension than any clean sample."""
    g = torch.Generator().manual_seed(0)
    clean = unit(torch.randn(300, 32, generator=g))
    base, u, v = unit(torch.randn(3, 32, generator=g))
    a, b = torch.randn(2, 20, 1, generator=g)
    planted = unit(base + 0.05 * (a * u + b * v))
    x = torch.cat([clean[:150], planted, clean[150:]])  # planted rows 150..169
    poisoned = torch.zeros(320, dtype=torch.bool)
    poisoned[150:170] = True
    scores = suspicion_scores(x, x, "image", k=10)
    metrics = detection_metrics(scores, poisoned, ks=())
    for name in ("knn_image", "lid_image"):
        assert metrics[name]["auroc"] == 0.0, name
        assert set(torch.nonzero(ranks(-scores[name]) <= 20).flatten().tolist()) == set(range(150, 170))


@pytest.fixture(scope="module")
def poisoned_shards(tmp_path_factory):
    """Two shards of 20 captioned shapes, 4 samples poisoned by `mmcl shards poison`, then a third shard with one
    undecodable image and one good sample."""
    root = tmp_path_factory.mktemp("audit")
    source = shape_shards(root / "clean", num_shards=2, per_shard=20)
    out = root / "poisoned"
    assert mmcl(["shards", "poison", str(source), "--output", str(out), "--count", "4", "--target-caption",
                 "a photo of a banana", "--seed", "2"]) == 0
    good = next(iter(wds.WebDataset(str(source / "shard-000000.tar"), shardshuffle=False)))
    with wds.TarWriter(str(out / "shard-000002.tar")) as writer:
        writer.write({"__key__": "broken", "jpg": b"not a jpeg", "txt": "a photo of nothing"})
        writer.write({"__key__": good["__key__"], "jpg": good["jpg"], "txt": good["txt"]})  # key reused: other shard
    return out


def shard_keys(folder) -> list[tuple[str, str]]:
    pairs = []
    for tar in sorted(folder.glob("*.tar")):
        with tarfile.open(tar) as t:
            keys = dict.fromkeys(m.name.rsplit(".", 1)[0] for m in t.getmembers())
        pairs += [(tar.name, key) for key in keys if key != "broken"]
    return pairs


def test_mmcl_audit_writes_scores_report_and_metrics(poisoned_shards, tmp_path, capsys):
    output, report = tmp_path / "scores.parquet", tmp_path / "report"
    (report / "thumbnails").mkdir(parents=True)
    (report / "thumbnails" / "999.png").write_bytes(b"an earlier audit's")  # ROW numbers would now lie
    assert mmcl(["audit", "tiny", "--data", str(poisoned_shards), "--output", str(output), "--report", str(report),
                 "--k", "5", "--chunk", "7"]) == 0
    printed = capsys.readouterr().out
    assert "audited 41 samples, skipped 1" in printed and "knn_image: AUROC" in printed
    table = pyarrow.parquet.read_table(output).to_pydict()
    assert list(zip(table["shard"], table["key"])) == shard_keys(poisoned_shards)  # one row per readable sample
    names = ["knn_image", "lid_image", "dao_image", "knn_text", "lid_text", "dao_text", "similarity"]
    assert set(names + [f"rank_{n}" for n in names] + ["key", "shard", "poisoned"]) == set(table)
    for name in names:
        assert sorted(table[f"rank_{name}"]) == list(range(1, 42))
        assert np.isfinite(table[name]).all()
    record = json.loads((poisoned_shards / "poisoned.json").read_text())  # found beside the shards
    listed = {(s["shard"], s["key"]) for s in record["samples"]}
    assert {(s, k) for s, k, p in zip(table["shard"], table["key"], table["poisoned"]) if p} == listed
    metrics = json.loads((report / "metrics.json").read_text())
    assert set(metrics) == set(names) and "precision@4" in metrics["dao_text"]
    for name in names:
        poisoned = torch.tensor(table["poisoned"])
        assert metrics[name]["auroc"] == pytest.approx(roc_auc_score(poisoned.numpy(), table[name]), abs=1e-12)
    markdown = (report / "report.md").read_text()
    assert "## Finding the poisoned samples" in markdown and "## Top 20 by similarity" in markdown
    assert "1 undecodable image" in markdown and "a photo of a banana" in markdown
    assert len(list((report / "thumbnails").glob("*.png"))) >= 20
    assert not (report / "thumbnails" / "999.png").exists()


def test_audio_text_shards_are_audited_by_their_audio_by_default(tmp_path):
    from tests.shard_factory import tone

    write_shards(tmp_path / "shards", [{"__key__": f"t{i:02d}", "flac": tone(0.2, hz=200.0 + 50 * i),
                                        "txt": f"a tone of {200 + 50 * i} hertz"} for i in range(12)], per_shard=6)
    output = tmp_path / "scores.parquet"
    # tiny-audio has image, audio and text towers: the shards hold no images, so the audio is what is audited.
    assert mmcl(["audit", "tiny-audio", "--data", str(tmp_path / "shards"), "--output", str(output),
                 "--k", "3"]) == 0
    table = pyarrow.parquet.read_table(output).to_pydict()
    assert len(table["key"]) == 12 and {"knn_audio", "dao_audio", "knn_text"} <= set(table)


def test_mistakes_are_named(poisoned_shards, tmp_path, capsys):
    assert mmcl(["audit", "tiny", "--data", str(tmp_path / "nowhere")]) == 2
    assert "no such shard folder" in capsys.readouterr().err
    assert mmcl(["audit", "tiny", "--data", str(poisoned_shards), "--poisoned", str(tmp_path / "p.json")]) == 2
    assert "p.json: no such file" in capsys.readouterr().err
    (tmp_path / "other.json").write_text(json.dumps({"samples": [{"shard": "x.tar", "key": "y"}]}))
    assert mmcl(["audit", "tiny", "--data", str(poisoned_shards), "--poisoned", str(tmp_path / "other.json"),
                 "--output", str(tmp_path / "a.parquet")]) == 2
    assert "none of its 1 poisoned samples is among the 41 audited samples" in capsys.readouterr().err



@pytest.mark.parametrize("args", [["audit", "--help"], ["audit", "tiny", "--data", "missing/"]], ids=" ".join)
def test_help_and_user_errors_do_not_import_torch(args):
    probe = ("import sys\nfrom pipelines.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
             "print('torch' in sys.modules, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).parent.parent)
    assert result.stderr.strip().splitlines()[-1] == "False", result.stderr

def test_non_finite_embeddings_are_refused_naming_the_sample(poisoned_shards):
    class Broken(torch.nn.Module):
        modalities = ["image", "text"]

        def encode(self, modality, inputs):
            out = torch.ones(len(inputs), 4)
            return out * float("nan") if modality == "image" else out

    with pytest.raises(UserError, match=r"image embeddings of 41 item\(s\) are not finite.*shard-000000.tar/"):
        embed_pairs(Broken(), {"image": lambda image: torch.zeros(3)}, lambda texts: torch.zeros(len(texts), 2),
                    AuditedShards(poisoned_shards), "image", Loading())



def _process(rank: int, port: int, argv: list[str]) -> None:
    # What torchrun sets.
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    assert mmcl(argv) == 0


def test_two_processes_score_as_one(poisoned_shards, tmp_path):
    """With two processes (as torchrun starts them) each embeds its share of the shards and searches the neighbours
    of its share of the blocks of 7 samples: the main process writes the same Parquet file as one process."""
    flags = ["audit", "tiny", "--data", str(poisoned_shards), "--k", "5", "--chunk", "7", "--report",
             str(tmp_path / "r")]
    assert mmcl([*flags, "--output", str(tmp_path / "alone.parquet")]) == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Forked from this process, which has imported everything already: seconds instead of a fresh start each.
    mp.start_processes(_process, args=(port, [*flags, "--output", str(tmp_path / "shared.parquet")]), nprocs=2,
                       start_method="fork")
    assert (pyarrow.parquet.read_table(tmp_path / "shared.parquet").to_pydict()
            == pyarrow.parquet.read_table(tmp_path / "alone.parquet").to_pydict())
