"""Two gloo processes on halves of a batch give the loss and gradients of one process on the whole batch.

Semantics checked (as DDP would apply them): the mean over ranks of each rank's loss equals the one-process loss;
each rank's gradient on its own feature rows, divided by the world size, equals the one-process gradient on those
rows; the mean over ranks of the gradient on the scalars (logit scale, bias) equals the one-process one. Also, per
rank, mmcl's clip equals open_clip's ClipLoss(local_loss=True, gather_with_grad=True) in value and gradients.
"""


import pytest
import torch
import torch.distributed as dist
from open_clip.loss import ClipLoss as OpenClipLoss

from tests.forked import run_forked
from tests.losses_helpers import random_outputs, total, value_and_grads
from tests.losses_helpers import one_thread  # noqa: F401  (fixture, used through pytestmark)
from mmcl.losses import create_loss

pytestmark = pytest.mark.usefixtures("one_thread")

WORLD = 2
BATCH = 12  # global; each rank holds BATCH // WORLD rows
MODALITIES = ("image", "text", "audio")

CASES = [
    ("clip", {}),
    ("clip", {"modalities": ["audio", "text"]}),
    ("pairwise", {}),
    ("siglip", {"chunk_size": 5}),
    ("uniformity", {"modalities": ["image", "audio"]}),
    ("alignment", {}),
    ("cua", {}),
    ("cuaxu", {}),
    ("dcl", {}),
    ("dclw", {"modalities": ["text", "audio"]}),
    ("symile", {"negative_sampling": "n"}),
    ("symile", {"negative_sampling": "n_squared"}),
    ("mv_infonce", {}),
    ("mv_dhel", {"modalities": ["image", "audio"]}),
    ("cwcl", {"modalities": ["audio", "image"]}),
    ("inmodal", {}),
]


def _global_inputs():
    # Second views of image and text too, for in-modal losses (the others pass over them).
    outputs = random_outputs(batch=BATCH, modalities=MODALITIES + ("image_view", "text_view"), scale=4.0, bias=-1.5,
                             seed=3)
    gen = torch.Generator().manual_seed(4)
    batch = {f"{m}_mask": torch.rand(BATCH, generator=gen) > 0.25 for m in MODALITIES}
    return outputs, batch


def _run(name, options, outputs, batch):
    torch.manual_seed(11)  # losses that sample negatives draw the same permutation in both settings
    return value_and_grads(lambda o: total(create_loss(name, **options)(o, batch)), outputs)


def _rank_slice(outputs, batch, rank):
    rows = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
    local = {k: (v.detach()[rows] if v.dim() == 2 else v.detach()).clone().requires_grad_(True) for k, v in outputs.items()}
    return local, {k: v[rows] for k, v in batch.items()}


def _place(grad, rank):
    if grad.dim() < 2:
        return grad
    full = grad.new_zeros(BATCH, grad.shape[1])
    full[rank * BATCH // WORLD : (rank + 1) * BATCH // WORLD] = grad
    return full


def _worker(rank, result_path):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        outputs, batch = _rank_slice(*_global_inputs(), rank)
        results = []
        for name, options in CASES:
            value, grads = _run(name, options, outputs, batch)
            # Feature gradients go into this rank's rows of a zero global tensor, so summing reassembles them;
            # values and scalar gradients are summed too, and the test divides by WORLD where DDP would average.
            grads = {k: _place(g, rank) for k, g in grads.items()}
            for tensor in [value, *grads.values()]:
                dist.all_reduce(tensor)
            results.append((value, grads))
        # Per rank, against open_clip's own "gather with grad + local loss" (no masks: it has none).
        theirs = OpenClipLoss(local_loss=True, gather_with_grad=True, rank=rank, world_size=WORLD)
        parity = [
            value_and_grads(lambda o: total(create_loss("clip")(o)), outputs),
            value_and_grads(lambda o: theirs(o["image"], o["text"], o["logit_scale"]), outputs),
        ]
        gathered = [None] * WORLD
        dist.all_gather_object(gathered, parity)
        if rank == 0:
            torch.save((results, gathered), result_path)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory):
    path = tmp_path_factory.mktemp("dist") / "results.pt"
    run_forked(_worker, (str(path),), WORLD)
    return torch.load(path)


def test_two_processes_clip_equals_open_clip_local_loss(two_process_results):
    for (ours, ours_grads), (theirs, theirs_grads) in two_process_results[1]:
        torch.testing.assert_close(ours, theirs)
        for key in ours_grads:
            torch.testing.assert_close(ours_grads[key], theirs_grads[key], msg=lambda m, k=key: f"grad {k}: {m}")


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{n}{o or ''}" for n, o in CASES])
def test_two_processes_equal_one(two_process_results, index):
    name, options = CASES[index]
    outputs, batch = _global_inputs()
    value, grads = _run(name, options, outputs, batch)
    dist_value, dist_grads = two_process_results[0][index]
    torch.testing.assert_close(dist_value / WORLD, value)
    for key, grad in grads.items():
        # Feature rows: rank r's gradient is WORLD × the global gradient of its rows (each rank's loss is a share
        # of the global mean and the gather sums gradients), so dividing by WORLD is what DDP's averaging does.
        torch.testing.assert_close(dist_grads[key] / WORLD, grad, msg=lambda m, k=key: f"{name} grad {k}: {m}")
