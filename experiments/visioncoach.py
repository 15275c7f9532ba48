"""VisionCoach alone: GSPO + hard-sample visual prompting + NLL self-distillation."""
from experiments import visd_v5e


def get_config(arg: str | None = None):
    c = visd_v5e.get_config(arg)
    c.mode = "visioncoach"
    if c.variant == "local":
        c.workdir = "workdir/visioncoach_local"
    return c


if __name__ == "__main__":  # grain spawns worker processes: keep start-up under this guard
    from visd_jax.training import cli

    cli.main(__file__)
