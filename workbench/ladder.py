"""Rank ladders: one LoRA file cut to ranks 1, 2, 4, ... without retraining.

A LoRA layer adds the update  dW = s * B @ A  to a frozen weight, where A (`down`) is r x in,
B (`up`) is out x r, and s = alpha / r (alpha / sqrt(r) under rsLoRA). dW has rank at most r.
Its best rank-k approximation, in the Frobenius and the spectral norm (Eckart-Young), is the
truncated SVD  U_k S_k V_k^T. Written back as B' = U_k sqrt(S_k), A' = sqrt(S_k) V_k^T with
alpha' = k (so s' = 1), it is again a LoRA layer, now of rank k. kohya's
`networks/resize_lora.py` does the same.

The SVD never needs the full out x in matrix: with B = Q_b R_b and A^T = Q_a R_a (thin QR),
dW = Q_b (s R_b R_a^T) Q_a^T, so the SVD of the small r x r middle gives dW's exactly.

`norm_kept` is ||dW_k||_F / ||dW||_F: the share of the update a rank-k cut keeps. A curve of
it against k answers "how many directions does this LoRA really use?".

Files keep their format: kohya/A1111 (`.lora_down.weight`, `.lora_up.weight`, `.alpha`),
diffusers (`.lora.down.weight`, alpha in the `lora_adapter_metadata` header) or peft
(`.lora_A.weight`), UNet and text-encoder layers alike.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

# (down suffix, up suffix) of each format
PAIR_SUFFIXES = ((".lora_down.weight", ".lora_up.weight"), (".lora.down.weight", ".lora.up.weight"),
                 (".lora_A.weight", ".lora_B.weight"))
GROUPS = (("text encoder", ("lora_te", "text_encoder", "text_model")), ("down", ("down_blocks", "input_blocks")),
          ("mid", ("mid_block", "middle_block")), ("up", ("up_blocks", "output_blocks")))


@dataclass(frozen=True)
class LoraLayer:
    """One layer of a LoRA file: where its factors are, and the scale s of s * up @ down."""
    name: str
    down_key: str
    up_key: str
    scale: float


def layer_group(name: str) -> str:
    """The block a layer belongs to: "text encoder", "down", "mid", "up" (else "other")."""
    for group, markers in GROUPS:
        if any(marker in name for marker in markers):
            return group
    return "other"


def read_lora(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A LoRA safetensors file's tensors and header."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"rank ladders read .safetensors LoRA files; got {path.name}")
    with safe_open(str(path), framework="pt") as f:
        header = dict(f.metadata() or {})
    return load_file(str(path)), header


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


def update_svd(down: torch.Tensor, up: torch.Tensor, scale: float, dtype=torch.float64):
    """U, S, Vh of dW = scale * up @ down (conv factors flattened), from thin QRs: U is out x r, Vh r x in."""
    down2 = down.reshape(down.shape[0], -1).to(dtype)
    up2 = up.reshape(up.shape[0], -1).to(dtype)
    q_up, r_up = torch.linalg.qr(up2)
    q_down, r_down = torch.linalg.qr(down2.T)
    u, s, vh = torch.linalg.svd(scale * r_up @ r_down.T)
    return q_up @ u, s, vh @ q_down.T


def norm_kept(singular_values: torch.Tensor, k: int) -> float:
    """||dW_k||_F / ||dW||_F from dW's singular values (1.0 for a zero update)."""
    total = float((singular_values ** 2).sum())
    return math.sqrt(float((singular_values[:k] ** 2).sum()) / total) if total > 0 else 1.0


def truncated_factors(down, up, scale, k, dtype=torch.float64, device=None, svd=None):
    """(down', up', singular values) with up' @ down' the best rank-k approximation of scale * up @ down.

    Ranks above the layer's own are zero-padded, so every layer of a rung has rank k. `svd`
    reuses a layer's (U, S, Vh) across rungs.
    """
    u, s, vh = svd if svd is not None else update_svd(down.to(device), up.to(device), scale, dtype)
    keep = min(k, len(s))
    root = s[:keep].sqrt()
    new_down = torch.zeros(k, vh.shape[1], dtype=s.dtype, device=s.device)
    new_up = torch.zeros(u.shape[0], k, dtype=s.dtype, device=s.device)
    new_down[:keep] = root[:, None] * vh[:keep]
    new_up[:, :keep] = u[:, :keep] * root
    down_shape = (k, *down.shape[1:])
    up_shape = (up.shape[0], k, *up.shape[2:])
    return (new_down.reshape(down_shape).to("cpu", down.dtype), new_up.reshape(up_shape).to("cpu", up.dtype),
            s.cpu())


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def ladder_header(header: dict, k: int, source: Path, kept: dict[str, float], overall: float) -> dict:
    """The source header, with peft's rank and alpha set to k (s = 1) and the ladder record added."""
    header = dict(header)
    if "lora_adapter_metadata" in header:
        meta = json.loads(header["lora_adapter_metadata"])
        for key in list(meta):
            field = key.rsplit(".", 1)[-1]
            if field in ("r", "lora_alpha"):
                meta[key] = k
            elif field == "use_rslora":
                meta[key] = False
            elif field in ("rank_pattern", "alpha_pattern"):
                meta[key] = {}
        header["lora_adapter_metadata"] = json.dumps(meta)
    header["workbench_ladder"] = json.dumps({"source": source.name, "source_sha256": file_sha256(source),
                                             "rank": k, "norm_kept": overall, "norm_kept_per_layer": kept})
    return header


def lora_rank_ladder(path: str | Path, ranks=(1, 2, 4, 8), out_dir: str | Path | None = None,
                     dtype: torch.dtype = torch.float64, device: str | None = None) -> dict[int, Path]:
    """Write one file per rank k whose every layer is the best rank-k approximation of the original's.

    Args:
        path: a LoRA .safetensors file (kohya, diffusers or peft format; UNet and text encoders).
        ranks: the rungs; a rank above a layer's own keeps it whole (zero-padded).
        out_dir: where `<stem>.rank<k>.safetensors` go (default: beside the source).
        dtype: the SVD's precision, float64 (default) or float32.
        device: where the SVDs run (default: CUDA when there is one, else the CPU).
    Returns {k: path}. Each file keeps the source's format and header, with its rank, alpha = k,
    and a `workbench_ladder` record: the source's sha256, k, and the norm kept per layer and overall.
    """
    from safetensors.torch import save_file
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"LoRA file {str(path)!r} does not exist")
    bad = [k for k in ranks if not isinstance(k, int) or isinstance(k, bool) or k < 1]
    if bad or not ranks:
        raise ValueError(f"`ranks` must be positive integers, got {list(ranks)!r}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    state, header = read_lora(path)
    layers = lora_layers(state, header)
    out = Path(out_dir) if out_dir is not None else path.parent
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    svds = {layer.name: update_svd(state[layer.down_key].to(device), state[layer.up_key].to(device), layer.scale,
                                   dtype) for layer in layers}  # once per layer, for every rung
    for k in sorted(set(ranks)):
        rung, kept, kept_sq, total_sq = dict(state), {}, 0.0, 0.0
        for layer in layers:
            down, up, s = truncated_factors(state[layer.down_key], state[layer.up_key], layer.scale, k,
                                            svd=svds[layer.name])
            rung[layer.down_key], rung[layer.up_key] = down.contiguous(), up.contiguous()
            if f"{layer.name}.alpha" in rung:
                rung[f"{layer.name}.alpha"] = torch.tensor(float(k), dtype=state[f"{layer.name}.alpha"].dtype)
            kept[layer.name] = round(norm_kept(s, k), 6)
            kept_sq += float((s[:k] ** 2).sum())
            total_sq += float((s ** 2).sum())
        overall = math.sqrt(kept_sq / total_sq) if total_sq > 0 else 1.0
        target = out / f"{path.stem}.rank{k}.safetensors"
        save_file(rung, str(target), metadata=ladder_header(header, k, path, kept, round(overall, 6)))
        written[k] = target
    return written


def ladder_adapters(ladder: dict[int, Path], prefix: str = "ladder") -> dict[str, str]:
    """A ladder as a spec's `adapters` mapping: {"ladder1": path, "ladder4": path, ...}."""
    return {f"{prefix}{k}": str(p) for k, p in sorted(ladder.items())}


def lora_singular_values(path: str | Path) -> pd.DataFrame:
    """One row per (layer, i): the i-th singular value of the layer's update dW, and its group."""
    state, header = read_lora(path)
    rows = []
    for layer in lora_layers(state, header):
        _, s, _ = update_svd(state[layer.down_key], state[layer.up_key], layer.scale)
        rows += [{"layer": layer.name, "group": layer_group(layer.name), "index": i, "value": float(v)}
                 for i, v in enumerate(s)]
    return pd.DataFrame(rows)


def norm_kept_table(path: str | Path, ranks=None) -> pd.DataFrame:
    """Norm kept at each rank k, per layer group and over all layers (group "all")."""
    values = lora_singular_values(path)
    ranks = ranks or range(1, int(values["index"].max()) + 2)
    rows = []
    for group, part in [*values.groupby("group"), ("all", values)]:
        total = float((part.value ** 2).sum())
        for k in ranks:
            kept = float((part[part["index"] < k].value ** 2).sum())
            rows.append({"group": group, "rank": k, "norm_kept": math.sqrt(kept / total) if total else 1.0})
    return pd.DataFrame(rows)
