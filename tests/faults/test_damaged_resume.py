"""Killed mid-write: a truncated newest checkpoint and half a metrics row. The restart
resumes from the previous checkpoint and the logs hold each step once, whole."""
import json

from tests.training.conftest import tiny_config
from visd_jax.training.trainer import Trainer


def test_restart_after_a_damaged_checkpoint_and_a_torn_row(tmp_path, caplog):
    cfg = tiny_config(tmp_path, mode="sft", sft_steps=2, rl_steps=0,
                      **{"sft.prompted_frac": 0.0, "sft.privileged_frac": 0.0})
    Trainer(cfg).run()
    run = tmp_path / "run"
    for f in (run / "checkpoints" / "2" / "state").rglob("*"):
        if f.is_file() and "/d/" in str(f):
            f.write_bytes(f.read_bytes()[:7])
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "sft/lo')
    again = Trainer(cfg)
    assert again.start == 1 and "checkpoints/2 is damaged" in caplog.text
    again.run()
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]
