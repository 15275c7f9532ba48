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


@pytest.fixture(scope="session")
def qwen_tokenizer_dir(tmp_path_factory):
    """The real Qwen2/Qwen2.5 tokenizer (151,643 BPE tokens + special ids from 151643), offline."""
    from tests.realqwen import build_qwen_tokenizer

    return build_qwen_tokenizer(tmp_path_factory.mktemp("qwen_tok"))


@pytest.fixture(scope="session")
def qwen_checkpoint(tmp_path_factory, qwen_tokenizer_dir):
    """`qwen_checkpoint(tie)`: a tiny random Qwen2.5-VL directory saved by transformers with the
    real vocabulary, token ids, tokenizer, generation_config and hub config.json layout."""
    pytest.importorskip("torch")
    from tests.realqwen import write_tiny_checkpoint

    made = {}

    def get(tie: bool = False):
        if tie not in made:
            made[tie] = write_tiny_checkpoint(tmp_path_factory.mktemp(f"qwen_tiny_tie{int(tie)}"),
                                              tie_word_embeddings=tie, tokenizer_dir=qwen_tokenizer_dir)
        return made[tie]

    return get
