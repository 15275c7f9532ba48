"""The one trainer: rollouts, rewards, judge and teacher, losses, optimizer, checkpoints, metrics."""
