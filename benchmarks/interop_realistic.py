"""Export and import at a realistic size: open_clip's ViT-B-32 (151 M parameters, random initialisation) through
`open_clip: {name, weights}` into mmcl, back out to open_clip's format, and to ONNX; prints the largest differences.

    python benchmarks/interop_realistic.py   # about a minute on 2 CPU cores, most of it the ONNX export
"""

import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import open_clip
import torch
from PIL import Image
from safetensors.torch import save_file

from mmcl.interop.onnx_format import export_onnx
from mmcl.interop.open_clip_format import export_open_clip
from mmcl.models import create_model

torch.set_num_threads(2)
tmp = Path(tempfile.mkdtemp())
torch.manual_seed(0)
ref = open_clip.create_model("ViT-B-32").eval()
save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, tmp / "vitb32.safetensors")
t = time.time()
model, tr, tok = create_model({"open_clip": {"name": "ViT-B-32", "weights": str(tmp / "vitb32.safetensors")}})
model.eval(); print("import", round(time.time() - t, 1), "s,", sum(p.numel() for p in model.parameters()) / 1e6, "M params")
rng = np.random.default_rng(0)
imgs = torch.stack([tr.eval["image"](Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))) for _ in range(4)])
caps = tok(["a photo of a dog", "a red car parked by a tree", "two cats", "a diagram"])
with torch.no_grad():
    ours = {"image": model.encode("image", imgs), "text": model.encode("text", caps)}
    theirs = {"image": ref.encode_image(imgs, normalize=True), "text": ref.encode_text(caps, normalize=True)}
print("import vs open_clip max diff", {m: float((ours[m] - theirs[m]).abs().max()) for m in ours})
export_open_clip(model, tmp / "oc")
back = open_clip.create_model_and_transforms(f"local-dir:{tmp / 'oc'}")[0].eval()
with torch.no_grad():
    print("export->open_clip max diff", float((back.encode_image(imgs, normalize=True) - ours["image"]).abs().max()),
          float((back.encode_text(caps, normalize=True) - ours["text"]).abs().max()))
t = time.time(); export_onnx(model, tmp / "onnx"); print("onnx export", round(time.time() - t, 1), "s")
for m, x in (("image", imgs), ("text", caps)):
    got = onnxruntime.InferenceSession(str(tmp / "onnx" / f"{m}.onnx")).run(["unit_embedding"], {"input": x.numpy()})[0]
    print("onnx", m, "max diff", float(np.abs(got - ours[m].numpy()).max()))
