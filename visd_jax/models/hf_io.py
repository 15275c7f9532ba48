"""Hugging Face safetensors checkpoints in and out, one tensor (one shard of one) at a time.

Loading never materialises the model on the host: the model is built abstractly with
`nnx.eval_shape`, each safetensors file is memory-mapped, and every parameter is placed
with `jax.make_array_from_callback`, whose callback reads only the slice that one device
holds. No pickle is ever read. bfloat16 files are read through ml_dtypes (the safetensors
numpy front end cannot represent bfloat16).

The scanned layout (`scan_layers=True`, decoder parameters stacked [L, ...]) is read from
and written to the same per-layer names, so a checkpoint does not depend on the layout.

Names: transformers' hub layout (`model.layers.N...`, `visual.blocks.N...`, `lm_head`), as
`save_pretrained` writes it; the newer `model.language_model.` / `model.visual.` prefixes
are accepted on input.
"""
from __future__ import annotations

import json
import pathlib
import struct

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from visd_jax.models.config import Qwen25VLConfig
from visd_jax.models.model import Qwen25VL, _as_dtype, param_shardings

_ST_TO_NP = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}
_NP_TO_ST = {np.dtype(v): k for k, v in _ST_TO_NP.items()}


class CheckpointError(ValueError):
    """A checkpoint tensor is missing, unexpected or has the wrong shape."""


# ---------------------------------------------------------------------------- reading
class SafetensorsDir:
    """Lazy view of every tensor in a checkpoint directory's *.safetensors files."""

    def __init__(self, path: str | pathlib.Path):
        self.path = pathlib.Path(path)
        files = sorted(self.path.glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"no *.safetensors files in {self.path}")
        self.entries: dict[str, tuple[pathlib.Path, str, tuple[int, ...], int, int]] = {}
        for f in files:
            with open(f, "rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(n))
            for name, meta in header.items():
                if name == "__metadata__":
                    continue
                if meta["dtype"] not in _ST_TO_NP:
                    raise CheckpointError(f"{f.name}: tensor {name!r} has unsupported dtype {meta['dtype']}")
                start, end = meta["data_offsets"]
                self.entries[_normalise(name)] = (f, meta["dtype"], tuple(meta["shape"]), 8 + n + start, 8 + n + end)
        self._maps: dict[pathlib.Path, np.memmap] = {}

    def shape(self, name: str) -> tuple[int, ...]:
        return self.entries[name][2]

    def array(self, name: str) -> np.ndarray:
        """Memory-mapped (lazy) array; slicing it reads only the touched pages."""
        f, dt, shape, start, end = self.entries[name]
        if f not in self._maps:
            self._maps[f] = np.memmap(f, dtype=np.uint8, mode="r")
        raw = self._maps[f][start:end]
        return raw.view(_ST_TO_NP[dt]).reshape(shape)


def _normalise(name: str) -> str:
    if name.startswith("model.language_model."):
        return "model." + name[len("model.language_model."):]
    if name.startswith("model.visual."):
        return name[len("model."):]
    return name


# ---------------------------------------------------------------------------- name table
def hf_name(path: tuple) -> tuple[str, str]:
    """(Hugging Face tensor name, layout kind) for one of our parameter paths.

    kind: 'copy' (same layout), 'linear' (ours [in, out] = torch weight [out, in] transposed),
    'conv' (ours [C*Tp*P*P, E] = Conv3d weight [E, C, Tp, P, P] flattened and transposed).
    """
    parts = [str(p) for p in path]
    if parts == ["visual", "patch_embed"]:
        return "visual.patch_embed.proj.weight", "conv"
    if parts == ["lm_head"]:
        return "lm_head.weight", "linear"
    if parts == ["model", "embed_tokens"]:
        return "model.embed_tokens.weight", "copy"
    name = ".".join(parts).replace("merger.fc1", "merger.mlp.0").replace("merger.fc2", "merger.mlp.2")
    if name.endswith(".kernel"):
        return name[: -len(".kernel")] + ".weight", "linear"
    return name, "copy"


def _is_stacked(path: tuple) -> bool:
    """A decoder parameter of the scanned layout: model.layers.<name> with a leading [L]."""
    return len(path) > 2 and str(path[0]) == "model" and str(path[1]) == "layers" and not str(path[2]).isdigit()


def _hf_names(path: tuple, shape: tuple[int, ...]) -> tuple[list[str], str]:
    """(HF tensor names, kind) for one parameter: one name, or L (model.layers.0.. L-1) when stacked."""
    if not _is_stacked(path):
        name, kind = hf_name(path)
        return [name], kind
    per_layer = [hf_name((*path[:2], i, *path[2:])) for i in range(shape[0])]
    return [n for n, _ in per_layer], per_layer[0][1]


def _hf_shape(shape: tuple[int, ...], kind: str, cfg: Qwen25VLConfig) -> tuple[int, ...]:
    if kind == "linear":
        return (shape[1], shape[0])
    if kind == "conv":
        v = cfg.vision
        return (shape[1], v.in_channels, v.temporal_patch_size, v.patch_size, v.patch_size)
    return tuple(shape)


def _read(arr: np.ndarray, kind: str, index: tuple, dtype) -> np.ndarray:
    """Our-layout slice `index` of the HF tensor `arr`, cast to `dtype`."""
    if kind == "linear":
        si, so = index
        out = arr[so, si].T
    elif kind == "conv":
        sp, se = index
        block = arr[se]
        out = block.reshape(block.shape[0], -1).T[sp]
    else:
        out = arr[index]
    return np.asarray(out).astype(dtype)


def load_hf_checkpoint(path, *, mesh: Mesh | None = None, dtype=jnp.float32, compute_dtype=None,
                       remat: bool = False, scan_layers: bool = False) -> Qwen25VL:
    """Qwen25VL with the weights of a local Hugging Face checkpoint directory.

    Every parameter goes straight from the memory-mapped file to its device shard(s), so
    peak host memory is about one parameter shard. `dtype` is the parameter dtype
    (float32 or bfloat16); `compute_dtype` defaults to it. With `scan_layers`, the
    per-layer tensors `model.layers.N.*` are stacked on the leading "layers" axis (each
    device shard is assembled from the L per-layer slices it holds).
    """
    path = pathlib.Path(path)
    cfg = Qwen25VLConfig.from_hf(path)
    dtype = _as_dtype(dtype)
    with nnx.use_eager_sharding(False):
        abstract = nnx.eval_shape(
            lambda: Qwen25VL(cfg, rngs=nnx.Rngs(0), param_dtype=dtype, dtype=compute_dtype, remat=remat,
                             scan_layers=scan_layers)
        )
    graphdef, state = nnx.split(abstract)
    files = SafetensorsDir(path)
    shardings = None if mesh is None else param_shardings(state, mesh)
    flat = dict(nnx.to_flat_state(state))
    flat_sh = None if shardings is None else dict(nnx.to_flat_state(shardings))
    plan = {p: _hf_names(p, tuple(var.shape)) for p, var in flat.items()}
    wanted = {n for names, _ in plan.values() for n in names}
    unexpected = sorted(set(files.entries) - set(wanted))
    if cfg.tie_word_embeddings and "lm_head.weight" in unexpected:
        unexpected.remove("lm_head.weight")  # some tied checkpoints also store the tied copy
    if unexpected:
        raise CheckpointError(f"{path}: unexpected tensors not used by Qwen25VL: {unexpected[:10]}"
                              + (f" (+{len(unexpected) - 10} more)" if len(unexpected) > 10 else ""))
    missing = sorted(set(wanted) - set(files.entries))
    if missing:
        raise CheckpointError(f"{path}: missing tensors: {missing[:10]}"
                              + (f" (+{len(missing) - 10} more)" if len(missing) > 10 else ""))
    np_dtype = jnp.dtype(dtype)
    for p, (names, kind) in plan.items():
        var = flat[p]
        shape = tuple(var.shape)
        stacked = _is_stacked(p)
        want = _hf_shape(shape[1:] if stacked else shape, kind, cfg)
        for name in names:
            if files.shape(name) != want:
                raise CheckpointError(f"{path}: tensor {name!r} has shape {files.shape(name)}, expected {want}")
        arrs = [files.array(name) for name in names]

        def read(idx, arrs=arrs, kind=kind, stacked=stacked):
            if not stacked:
                return _read(arrs[0], kind, idx, np_dtype)
            # idx[0] selects layers (a slice: the "layers" axis is never split, but stay general)
            return np.stack([_read(a, kind, idx[1:], np_dtype) for a in arrs[idx[0]]])

        if flat_sh is None:
            value = jax.device_put(read((slice(None),) * len(shape)))
        else:
            sh = flat_sh[p]
            sh = sh.get_value() if isinstance(sh, nnx.Variable) else sh
            value = jax.make_array_from_callback(shape, sh, read)
        var.set_value(value)
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


# ---------------------------------------------------------------------------- writing
# What a checkpoint directory holds besides weights and config.json: the tokenizer, its chat
# template, the processor's settings and the generation config (the stop ids).
COMPANION_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                   "special_tokens_map.json", "added_tokens.json", "chat_template.json",
                   "chat_template.jinja", "preprocessor_config.json", "generation_config.json")


def save_hf_checkpoint(model: Qwen25VL, path, *, max_shard_bytes: int = 5 * 2**30,
                       companions_from=None) -> None:
    """Writes config.json and safetensors shards (+ index) that transformers loads back;
    `companions_from` (the checkpoint the policy started from) gives the tokenizer, chat
    template and generation config files copied next to them, so the directory is whole.

    Tensors are fetched to the host one at a time, so host memory peaks at one tensor.
    The files keep the parameters' dtype.
    """
    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if companions_from is not None:
        import shutil

        for name in COMPANION_FILES:
            src = pathlib.Path(companions_from) / name
            if src.is_file():
                shutil.copyfile(src, path / name)
    cfg = model.config
    state = nnx.state(model, nnx.Param)
    items = []  # (name, kind, fetch: () -> device array in our layout, HF shape, dtype)
    for p, var in nnx.to_flat_state(state):
        value = var.get_value() if isinstance(var, nnx.Variable) else var
        dt = np.dtype(value.dtype)
        names, kind = _hf_names(p, tuple(value.shape))
        if not _is_stacked(p):
            items.append((names[0], kind, lambda v=value: v, _hf_shape(tuple(value.shape), kind, cfg), dt))
            continue
        # Scanned layout: one HF tensor per layer, sliced off the device array only when written.
        hf_shape = _hf_shape(tuple(value.shape[1:]), kind, cfg)
        items.extend((n, kind, lambda v=value, i=i: v[i], hf_shape, dt) for i, n in enumerate(names))
    dtypes = {dt for *_, dt in items}
    cfg_dtype = "bfloat16" if dtypes == {np.dtype(ml_dtypes.bfloat16)} else "float32"
    (path / "config.json").write_text(json.dumps(cfg.to_hf_dict(dtype=cfg_dtype), indent=2))

    shards, cur, size = [], [], 0
    for it in sorted(items, key=lambda t: t[0]):
        nbytes = int(np.prod(it[3])) * it[4].itemsize
        if cur and size + nbytes > max_shard_bytes:
            shards.append(cur)
            cur, size = [], 0
        cur.append(it)
        size += nbytes
    shards.append(cur)
    weight_map = {}
    for i, shard_items in enumerate(shards):
        fname = "model.safetensors" if len(shards) == 1 else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        _write_safetensors(path / fname, shard_items)
        weight_map.update({it[0]: fname for it in shard_items})
    if len(shards) > 1:
        total = sum(int(np.prod(it[3])) * it[4].itemsize for it in items)
        (path / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)
        )


def _to_hf_layout(x: np.ndarray, kind: str, hf_shape) -> np.ndarray:
    if kind == "linear":
        return np.ascontiguousarray(x.T)
    if kind == "conv":
        return np.ascontiguousarray(x.T).reshape(hf_shape)
    return np.ascontiguousarray(x)


def _write_safetensors(file: pathlib.Path, items) -> None:
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, _, _, hf_shape, dt in items:
        nbytes = int(np.prod(hf_shape)) * dt.itemsize
        header[name] = {"dtype": _NP_TO_ST[dt], "shape": list(hf_shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format pads the header to 8-byte alignment
    with open(file, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for name, kind, fetch, hf_shape, dt in items:
            host = np.asarray(jax.device_get(fetch()))
            fh.write(_to_hf_layout(host, kind, hf_shape).astype(dt, copy=False).tobytes())
