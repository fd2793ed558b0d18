"""LoRA files: one reader for the kohya/A1111, diffusers and peft formats, the writer, one hash and one cache key.

The three formats name the factors of  dW = s * up @ down  differently:
  kohya/A1111  `lora_unet_..._to_q.lora_down.weight`, `.lora_up.weight`, and `.alpha` per layer
  diffusers    `unet....to_q.lora.down.weight`, `.lora.up.weight`; alpha in the header
               (`lora_adapter_metadata`), else alpha = r
  peft         `....to_q.lora_A.weight`, `.lora_B.weight`; alpha likewise
Files are read from safetensors only: a pickle (.bin/.pt/.ckpt) can run code when loaded.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ..models.fingerprint import file_sha256, module_fingerprint

# LyCORIS files (`lycoris.py` loads them): format name -> (peft config class, the factor names a layer may hold)
LYCORIS_KINDS = {"LyCORIS LoHa": ("LoHaConfig", ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1",
                                                 "hada_t2")),
                 "LyCORIS LoKr": ("LoKrConfig", ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a",
                                                 "lokr_w2_b", "lokr_t2"))}
LYCORIS_FACTORS = {factor for _, factors in LYCORIS_KINDS.values() for factor in factors}
# A LyCORIS layer's rank: the rows of the first of these it holds (a LoKr layer of full factors holds none)
LYCORIS_RANK_FACTORS = ("hada_w1_b", "lokr_w1_b", "lokr_w2_b")


def lycoris_kind(keys) -> str | None:
    """"LyCORIS LoHa" or "LyCORIS LoKr" for a file with those factors, else None."""
    for kind, (_, factors) in LYCORIS_KINDS.items():
        if any(key.rsplit(".", 1)[-1] in factors for key in keys):
            return kind
    return None

MAX_HEADER = 100 * 2**20  # bytes of a safetensors header (its JSON table of tensors) we are willing to read
KOHYA_PREFIXES = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")  # UNet, then the text encoders
# (down suffix, up suffix) of each format
# (down, up) key suffixes: kohya's, diffusers' UNet and text-encoder layers (`convert_state_dict_to_diffusers` names a
# text encoder's `lora_linear_layer`, as diffusers' training scripts save them), and peft's
PAIR_SUFFIXES = ((".lora_down.weight", ".lora_up.weight"), (".lora.down.weight", ".lora.up.weight"),
                 (".lora_linear_layer.down.weight", ".lora_linear_layer.up.weight"),
                 (".lora_A.weight", ".lora_B.weight"))


@dataclass(frozen=True)
class LoraLayer:
    """One layer of a LoRA file: where its factors are, and the scale s of s * up @ down."""
    name: str
    down_key: str
    up_key: str
    scale: float


def check_safetensors(path: Path) -> None:
    """Refuse any file but a safetensors one, by its suffix (in any case) and by its first bytes.

    A safetensors file starts with the length of its JSON header (8 bytes, little-endian) and
    the header's `{`; a pickle (.bin/.pt/.ckpt, or one renamed) starts otherwise, and loading
    one can run code.
    """
    if path.suffix.lower() != ".safetensors":
        raise ValueError(f"LoRA file {path.name!r} is not a .safetensors file: only safetensors files are loaded, "
                         "because other formats (.bin/.pt/.ckpt pickles) can run code when they load. Convert it to "
                         ".safetensors; for a file you made yourself, load_lora(..., allow_pickle=True) in Python.")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(9)
    length = int.from_bytes(head[:8], "little") if len(head) == 9 else 0
    if not (2 <= length <= min(MAX_HEADER, size - 8)) or head[8:9] != b"{":
        raise ValueError(f"LoRA file {path.name!r} is named .safetensors but is not one: its first bytes "
                         f"{head[:9]!r} are no safetensors header. It may be a renamed pickle; it was not loaded.")


def a1111_lora_hash(path: str | Path) -> str:
    """A1111's short hash of a LoRA file (its "Lora hashes" field): the first 12 hex digits of the sha256 of the
    tensor bytes after the safetensors header, which A1111 hashes so that editing the metadata keeps the hash."""
    with open(path, "rb") as f:
        header_length = int.from_bytes(f.read(8), "little")
    return file_sha256(Path(path), start=8 + header_length)[:12]


def read_header(path: str | Path) -> dict[str, str]:
    """A safetensors file's header (its metadata strings), without reading the tensors."""
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def read_lora(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A LoRA safetensors file's tensors and header."""
    from safetensors.torch import load_file
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"LoRA files are read as .safetensors; got {path.name}")
    return load_file(str(path)), read_header(path)


def peft_settings(header: dict, component: str) -> tuple[float | None, bool]:
    """(lora_alpha, use_rslora) that diffusers stored for one component (`unet`, `text_encoder`, ...)."""
    meta = json.loads(header.get("lora_adapter_metadata", "{}"))
    alpha = meta.get(f"{component}.lora_alpha", meta.get("lora_alpha"))
    return alpha, bool(meta.get(f"{component}.use_rslora", meta.get("use_rslora", False)))


def lora_layers(state: dict[str, torch.Tensor], header: dict) -> list[LoraLayer]:
    """Every (down, up) pair in a LoRA state dict, with its scale."""
    layers = []
    for key in sorted(state):
        for down_suffix, up_suffix in PAIR_SUFFIXES:
            if key.endswith(down_suffix):
                name = key[:-len(down_suffix)]
                rank = state[key].shape[0]
                if f"{name}.alpha" in state:       # kohya: alpha per layer
                    alpha, rslora = float(state[f"{name}.alpha"]), False
                else:                              # diffusers/peft: alpha in the header, else alpha = r
                    alpha, rslora = peft_settings(header, name.split(".", 1)[0])
                    alpha = float(rank if alpha is None else alpha)
                scale = alpha / (math.sqrt(rank) if rslora else rank)
                layers.append(LoraLayer(name, key, name + up_suffix, scale))
    if not layers:
        raise ValueError("no LoRA layers found: expected keys ending in .lora_down.weight, .lora.down.weight "
                         "or .lora_A.weight")
    return layers


def read_lora_metadata(path: str | Path) -> dict:
    """Rank, alpha and training record stored in a LoRA file's header (empty where absent)."""
    header = read_header(path)
    info = json.loads(header.get("workbench_training", "{}"))
    if "lora_adapter_metadata" in header:
        peft_config = json.loads(header["lora_adapter_metadata"])
        info.update({k.split(".")[-1]: v for k, v in peft_config.items() if k.split(".")[-1] in ("r", "lora_alpha")})
    return info


# Adapter files that are not loaded, by a key suffix each has: (what it is, its keys, what to do). Loading a DoRA file
# as LoRA would silently drop its magnitudes. LyCORIS LoHa and LoKr files load (`lycoris.py`).
NOT_LORA = (("a DoRA file", (".dora_scale", ".lora_magnitude_vector", ".lora_magnitude_vector.weight"),
             "Loaded as LoRA it would lose its magnitudes and act weaker; merge it into the model, or use a plain LoRA."),)


def not_lora(keys: list[str]) -> tuple[str, str, str] | None:
    """(what the file is, a key that says so, what to do) for a file of NOT_LORA's kinds; None for a LoRA file."""
    for what, suffixes, do in NOT_LORA:
        found = next((k for k in keys if k.endswith(suffixes)), None)
        if found:
            return what, found, do
    return None


def refuse(path: Path, what: str, do: str) -> ValueError:
    """A one-line refusal of a LoRA file: what it is, and what to do."""
    return ValueError(f"LoRA file {Path(path).name[:80]!r} {what}; it was not loaded. {do}")


def inspect_lora_file(path: str | Path) -> dict:
    """Format, rank and alpha of a LoRA safetensors file, read from its keys and header; a one-line ValueError for a
    file that is not one (a damaged header, DoRA, an alpha that is not one number, rank 0). LyCORIS LoHa and LoKr
    files are LoRA's kin, and load: their format, layers, ranks and alphas are read the same way.

    diffusers/peft files store rank in the shapes of `lora_A`/`lora.down` and alpha in the
    header; kohya/A1111 files (`lora_unet_...lora_down.weight`) store alpha as `.alpha` tensors.
    """
    from safetensors import SafetensorError, safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
            other = not_lora(keys)
            if other:
                what, found, do = other
                raise refuse(path, f"is {what} (keys such as {found[-60:]!r}), not LoRA", do)
            kind = lycoris_kind(keys)
            if kind:  # a layer's rank: its first low-rank factor's rows; LoKr's full factors have none
                downs = sorted({k.rsplit(".", 1)[0] for k in keys if k.rsplit(".", 1)[-1] in LYCORIS_FACTORS})
                ranks = sorted({f.get_slice(k).get_shape()[0] for k in keys
                                if k.rsplit(".", 1)[-1] in LYCORIS_RANK_FACTORS})
            else:
                downs = [k for k in keys if k.endswith(tuple(down for down, _ in PAIR_SUFFIXES))]
                ranks = sorted({f.get_slice(k).get_shape()[0] for k in downs})
            alpha_keys = [k for k in keys if k.endswith(".alpha")]
            shapes = {k: f.get_slice(k).get_shape() for k in alpha_keys}
            odd = next((k for k, shape in shapes.items() if math.prod(shape) != 1), None)
            if odd:
                raise refuse(path, f"has an alpha of shape {list(shapes[odd])} ({odd[:60]}), not one number",
                             "It is damaged or not a LoRA file.")
            alphas = sorted({float(f.get_tensor(k).reshape(())) for k in alpha_keys})
    except SafetensorError as err:
        raise refuse(path, f"is not a readable safetensors file ({str(err).splitlines()[0][:100]})",
                     "It is damaged, or another format renamed.") from None
    if 0 in ranks or not all(math.isfinite(a) for a in alphas):
        raise refuse(path, "has a layer of rank 0" if 0 in ranks else f"has an alpha that is not finite ({alphas})",
                     "It is damaged or not a LoRA file.")
    kind = kind or ("kohya" if any(k.startswith(KOHYA_PREFIXES) for k in keys) else "diffusers")
    meta = read_lora_metadata(path)
    if not alphas and "lora_alpha" in meta:
        alphas = [float(meta["lora_alpha"])]
    return {"format": kind, "layers": len(downs), "ranks": ranks, "alphas": alphas or None}


def kohya_text_attention_without_out_proj(path: Path) -> bool:
    """Whether a kohya file has text-encoder attention layers but none of their out_proj layers."""
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        attention = [k for k in f.keys() if k.startswith(KOHYA_PREFIXES[1:]) and "_self_attn_" in k]
    return bool(attention) and not any("_out_proj." in k for k in attention)


def file_parameters(path: Path) -> int:
    """Trainable parameters stored in a LoRA file (every down and up factor)."""
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys() if not k.endswith(".alpha"))


def save_lora(pipe, adapter_name: str, config, path: Path, metadata: dict, text_config=None) -> None:
    """Write an adapter of the UNet (and, with `text_config`, of the text encoders that carry it) in diffusers' LoRA
    format, with peft's configs and our training record.

    Without the config, diffusers reloads alpha as r: an r16/alpha8 adapter would come back
    twice as strong. The training record goes into the same safetensors header.
    """
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import load_file, save_file

    from ..families import denoiser, family_of
    def layers(module) -> dict:
        state = get_peft_model_state_dict(module, adapter_name=adapter_name)
        return {k: v.detach().float().contiguous() for k, v in convert_state_dict_to_diffusers(state).items()}

    def plain(lora_config) -> dict:
        return {k: (sorted(v) if isinstance(v, set) else v) for k, v in lora_config.to_dict().items()}

    family = family_of(pipe)
    parts = {"unet_lora_layers": layers(denoiser(pipe)), "unet_lora_adapter_metadata": plain(config)}
    for component in family.TEXT_ENCODERS if text_config is not None else ():  # save_lora_weights' keyword names
        if adapter_name in (getattr(getattr(pipe, component), "peft_config", None) or {}):
            parts[f"{component}_lora_layers"] = layers(getattr(pipe, component))
            parts[f"{component}_lora_adapter_metadata"] = plain(text_config)
    family.lora_loader().save_lora_weights(path.parent, weight_name=path.name, **parts)
    header = read_header(path)
    header["workbench_training"] = json.dumps(metadata)
    save_file(load_file(str(path)), str(path), metadata=header)


def dataset_hash(images: torch.Tensor, captions: list[str]) -> str:
    """A hash of training data: the images' bytes and the captions."""
    digest = hashlib.sha256(images.numpy().tobytes())
    digest.update("\n".join(captions).encode())
    return digest.hexdigest()[:16]


def cache_key(unet, data_hash: str, rank: int, alpha: float, use_rslora: bool, steps: int, lr: float,
              seed: int, options: dict | None = None) -> str:
    """The cache key of one trained adapter: a hash of the base UNet, the data and every training setting.

    `options` are `train_lora`'s other keywords (batch size, caption dropout, ...); they join the
    key only when given, so the keys of adapters trained without them stay the same.
    """
    parts = [module_fingerprint(unet), data_hash, rank, alpha, use_rslora, steps, lr, seed]
    settings = json.dumps(parts + [sorted(options.items())] if options else parts)
    return hashlib.sha256(settings.encode()).hexdigest()[:16]
