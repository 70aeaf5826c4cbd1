"""Evaluation embeddings do not depend on the loader's batch size or worker count: bit for bit.

The parts here are large enough for that to be tested: one shard of 103 items (three full forward groups of
`embed.FORWARD_ROWS` = 32 and a remainder of 7) and one of 37, so loader batches of 32, 64 and 96 cut the items
differently and two workers each take a part. Embeddings are compared with torch.equal on two intra-op threads,
where CPU kernels commonly give a row different last bits depending on how many rows share its forward pass
(seen here: up to 6e-8 when each loader batch went through the model in one pass).
"""

from __future__ import annotations

import pytest
import torch

from mmcl.data.failures import FailureCounter
from mmcl.eval.datasets import open_source
from mmcl.eval.embed import Loading, embed_source
from mmcl.models import create_model
from tests.train_fixtures import shape_shards

SETTINGS = [(batch_size, workers) for workers in (0, 2) for batch_size in (32, 64, 96)]
MODALITIES = ["image", "text"]


@pytest.fixture(autouse=True)
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("invariance")
    shape_shards(folder / "big", num_shards=1, per_shard=103, seed=1)
    shape_shards(folder / "small", num_shards=1, per_shard=37, seed=2)
    (folder / "big" / "shard-000000.tar").rename(folder / "shard-000000.tar")
    (folder / "small" / "shard-000000.tar").rename(folder / "shard-000001.tar")
    return open_source(folder)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model, transforms, tokenizer = create_model("tiny")
    return model.eval(), transforms.eval, tokenizer


def embed_all(model, source, batch_size: int, workers: int):
    net, transforms, tokenizer = model
    return embed_source(net, source, MODALITIES, transforms, tokenizer,
                        Loading(batch_size=batch_size, num_workers=workers))


def assert_identical(a, b, what: str):
    assert a.keys == b.keys, what
    assert torch.equal(a.text_owner, b.text_owner) and torch.equal(a.labels, b.labels), what
    for m in MODALITIES:
        assert torch.equal(a.features[m], b.features[m]), (
            f"{what}: {m} embeddings differ by up to {(a.features[m] - b.features[m]).abs().max().item():.3g}")


def test_embeddings_are_identical_for_every_batch_size_and_worker_count(model, source):
    assert [len(list(part(FailureCounter()))) for part in source.parts()] == [103, 37]
    reference = embed_all(model, source, *SETTINGS[0])
    assert len(reference) == 140
    for batch_size, workers in SETTINGS[1:]:
        assert_identical(embed_all(model, source, batch_size, workers), reference,
                         f"batch_size {batch_size}, {workers} workers")
