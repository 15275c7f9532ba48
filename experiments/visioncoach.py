"""VisionCoach alone: GSPO + hard-sample visual prompting + NLL self-distillation.

Variants: those of `experiments/visd_v5e.py`, and `release`: the VisionCoach release's
recipe on a Qwen2.5-VL checkpoint (`--config.model.path`) and STGR-RL annotations: every
frame an image block with its caption, the release's system prompts, hints and pixel
budgets, rollouts at temperature 1, top-p 0.95 and transformers' default top-k 50.
"""
from experiments import visd_v5e

VARIANTS = (*visd_v5e.VARIANTS, "release")


REF_KL_BETA = 0.04  # run_grpo_video.sh --beta


def get_config(arg: str | None = None):
    variant = arg or "local"
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} for experiments/visioncoach.py; choose from {VARIANTS}")
    c = visd_v5e.get_config("v5e_16" if variant == "release" else variant)  # the release trains 7B
    c.mode = "visioncoach"
    c.variant = variant
    # the release trains with a KL to the frozen initial policy (run_grpo_video.sh --beta 0.04,
    # TRL's k3 per token); VISD and the main job use none
    c.rl.ref_kl_beta = REF_KL_BETA
    if variant == "local":
        c.workdir = "workdir/visioncoach_local"
    if variant == "release":
        c.recipe = "release"
        # vision_process.py: video frames at VIDEO_PIXELS_FACTOR=128 (min = max = 100352, the
        # effective max max(100352, int(1.05 * min)) = 105369), 2 fps, 4..16 frames; images
        # 3136..200704 (its MIN_PIXELS / MAX_PIXELS)
        c.data.update(fps=2.0, min_frames=4, max_frames=16, min_pixels=128 * 28 * 28, max_pixels=105369,
                      image_min_pixels=4 * 28 * 28, image_max_pixels=256 * 28 * 28, max_prompt_tokens=16384,
                      token_buckets=())  # every frame an image: twice the v5e variants' tokens
        # run_grpo_video.sh: 4 rollouts, 768 new tokens, lr 1e-6 cosine, weight decay 0.01, grad
        # norm 5; GenerationConfig(do_sample, top_p 0.95, temperature 1) leaves top_k at 50
        c.rl.update(num_generations=4, max_new_tokens=768, lr=1e-6, weight_decay=0.01, grad_clip=5.0,
                    temperature=1.0, top_p=0.95, top_k=50)
        c.coach.update(hard_threshold=2.21, alpha=0.1, top_n=2)
    return c


if __name__ == "__main__":  # grain spawns worker processes: keep start-up under this guard
    from visd_jax.training import cli

    cli.main(__file__)
