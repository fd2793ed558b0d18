"""How much rank a LoRA uses: the singular values of its updates, and rank ladders that cut a file to ranks 1, 2, 4, ...

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

Files keep their format (kohya/A1111, diffusers or peft; `files.py` reads all three), UNet
and text-encoder layers alike.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import torch

from ..families import denoiser
from ..models.fingerprint import file_sha256
from ..spec.shorten import short
from .adapters import loaded_adapters
from .files import lora_layers, read_lora

MAX_RANK = 4096  # the largest rung: SDXL's widest projection has 10,240 outputs but 1,280 or 2,560 inputs
GROUPS = (("text encoder", ("lora_te", "text_encoder", "text_model")), ("down", ("down_blocks", "input_blocks")),
          ("mid", ("mid_block", "middle_block")), ("up", ("up_blocks", "output_blocks")))


def layer_group(name: str) -> str:
    """The block a layer belongs to: "text encoder", "down", "mid", "up" (else "other")."""
    for group, markers in GROUPS:
        if any(marker in name for marker in markers):
            return group
    return "other"


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
        raise ValueError(f"`ranks` must be positive integers, got {short(list(ranks))}")
    if max(ranks) > MAX_RANK:
        raise ValueError(f"rank {max(ranks)} is over the limit of {MAX_RANK}: no LoRA layer of SD1.5 or SDXL is wider "
                         "than that, and a rung is zero-padded to its rank")
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


def lora_delta_spectrum(pipe, adapter: str):
    """Singular values of each layer's update  (alpha / r) * B @ A  for one adapter loaded on the UNet.

    A rank-r update has at most r non-zero singular values; how fast they fall shows how
    much of the rank the adapter really uses.
    """
    rows = []
    for name, module in denoiser(pipe).named_modules():
        if not (hasattr(module, "lora_A") and adapter in getattr(module, "lora_A", {})):
            continue
        a, b = module.lora_A[adapter].weight.float(), module.lora_B[adapter].weight.float()
        delta = (b @ a) * module.scaling[adapter]
        for index, value in enumerate(torch.linalg.svdvals(delta.detach()).tolist()[: a.shape[0]]):
            rows.append({"layer": name, "index": index, "singular_value": value})
    if not rows:
        raise ValueError(f"adapter {adapter!r} is not loaded; loaded: {loaded_adapters(pipe)}")
    return pd.DataFrame(rows)
