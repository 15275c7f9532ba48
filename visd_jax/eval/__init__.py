"""Evaluation metrics. `vstar`: V-STAR's tIoU / vIoU, R@tIoU, AP@vIoU, AM and LGM."""
