"""Weight-space interpolation between two checkpoints of one architecture (WiSE-FT, Wortsman et al., CVPR 2022).

θ(α) = (1 − α)·θ_base + α·θ_fine-tuned: α = 0 is the base (zero-shot) model, α = 1 the fine-tuned one; the paper
finds intermediate α (0.5 a common default) keeps most of the fine-tuned accuracy and much of the base model's
robustness. Floating-point tensors are mixed; integer buffers (counters) must agree and are kept.
"""

from __future__ import annotations

from mmcl.errors import UserError


def interpolate(base, fine_tuned, alpha: float, base_name: str = "base"):
    """`fine_tuned` with its weights replaced by the mix; both models must share config and parameter shapes."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha {alpha} is outside [0, 1]")
    ours, theirs = base.config.model_dump(exclude={"open_clip"}), fine_tuned.config.model_dump(exclude={"open_clip"})
    for config in (ours, theirs):  # where a tower's initial weights came from does not change its architecture
        for tower in config["towers"].values():
            tower.pop("weights", None)
    if ours != theirs:
        differing = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
        raise UserError(f"{base_name} is another architecture than the fine-tuned checkpoint (model config differs in "
                        f"{', '.join(differing)}): weights interpolate only within one architecture")
    base_state, tuned_state = base.state_dict(), fine_tuned.state_dict()
    mixed = {}
    for name, tuned in tuned_state.items():
        start = base_state[name]
        if tuned.is_floating_point():
            mixed[name] = (1 - alpha) * start + alpha * tuned
        elif not start.equal(tuned):
            raise UserError(f"{base_name}: integer tensor {name} differs from the fine-tuned checkpoint's")
        else:
            mixed[name] = tuned
    fine_tuned.load_state_dict(mixed)
    return fine_tuned
