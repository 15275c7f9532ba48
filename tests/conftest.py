"""Test-wide set-up: 8 fake CPU devices, absl flags parsed, Hugging Face offline.

XLA_FLAGS must be set before jax is imported anywhere, so this runs at collection time
before any test module imports the package.
"""
import os

_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pathlib  # noqa: E402

import pytest  # noqa: E402
from absl import flags  # noqa: E402

# grain's spawned workers read absl flags; pytest never parses them.
flags.FLAGS.mark_as_parsed()

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"
VIDEOS = SHARED / "videos"


@pytest.fixture(scope="session")
def mesh8():
    """The 8-device CPU mesh: data=2, fsdp=2, tensor=2."""
    import jax

    from visd_jax.parallel import MeshConfig, make_mesh

    assert len(jax.devices()) == 8, "conftest must set 8 fake CPU devices before jax is imported"
    return make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))


@pytest.fixture(scope="session")
def shared_videos():
    """Path to ../shared/videos; skips the test when the folder is absent."""
    if not VIDEOS.is_dir():
        pytest.skip(f"real clips not available: {VIDEOS} is absent (only in the dev checkout)")
    return VIDEOS


def pytest_collection_modifyitems(config, items):
    # torch-based parity tests are skipped, with the reason, where torch is absent.
    try:
        import torch  # noqa: F401
    except ImportError:
        skip = pytest.mark.skip(reason="torch is not installed (pip install -e '.[reference]')")
        for item in items:
            if "torch" in item.keywords:
                item.add_marker(skip)
