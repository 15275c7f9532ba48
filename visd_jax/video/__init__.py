"""Video input for Qwen2.5-VL: decode and sample frames, resize, patchify."""
from visd_jax.video.decode import Clip, VideoError, load_video
from visd_jax.video.patches import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, normalize_patches, patchify
from visd_jax.video.resize import sample_indices, smart_nframes, smart_resize

__all__ = [
    "Clip",
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "VideoError",
    "load_video",
    "normalize_patches",
    "patchify",
    "sample_indices",
    "smart_nframes",
    "smart_resize",
]
