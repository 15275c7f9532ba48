"""The RLVR baseline: plain GSPO on raw videos (no prompts, no judge, no teacher).

Same trainer and variants as experiments/visd_v5e.py; only the mode differs.
"""
from experiments import visd_v5e


def get_config(arg: str | None = None):
    c = visd_v5e.get_config(arg)
    c.mode = "gspo"
    if c.variant == "local":
        c.workdir = "workdir/gspo_local"
    return c


if __name__ == "__main__":  # grain spawns worker processes: keep start-up under this guard
    from visd_jax.training import cli

    cli.main(__file__)
