"""Metrics that load a model from the hub cache (CLIP, DINOv2), scored after a sweep; see `metric_registry`.

Their weights are checked before the first image (`check_weights`): a missing model is one clear
error and nothing is made. Each scorer takes the rows that lack its columns and returns
{trial_id: {column: value}}.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import ModelNotAvailableError, download_command
from ..families.hubcache import hub_cache
from ..spec.metric_registry import REGISTRY, AfterContext
from .scorers import reference_paths


def check_weights(names: list[str], models: dict | None = None) -> None:
    """Raise ModelNotAvailableError before anything runs when a model-based metric's weights are not cached."""
    for name in names:
        metric = REGISTRY[name]
        if metric.model is None:
            continue
        model = (models or {}).get(name, metric.model)
        if Path(model).is_dir():
            continue
        try:
            model_path(name, models)
        except Exception:
            raise ModelNotAvailableError(
                f"metric {name!r} needs {model!r} ({metric.download}), which is not in the hub cache "
                f"{hub_cache()}. Download it on a connected machine with {download_command(model)} "
                f"(or pass a local folder as metric_models: {{{name}: /path}}), or leave {name!r} out of `metrics`. "
                "No image was made.") from None


def model_path(name: str, models: dict | None) -> str:
    """The folder of a metric's model: the one `metric_models` names, or its cached hub snapshot."""
    from huggingface_hub import snapshot_download
    model = (models or {}).get(name, REGISTRY[name].model)
    if Path(model).is_dir():
        return model
    return snapshot_download(model, cache_dir=hub_cache(), local_files_only=True)


def image_batches(paths: list[str], size: int = 16):
    from PIL import Image
    for i in range(0, len(paths), size):
        yield [Image.open(p).convert("RGB") for p in paths[i:i + size]]


def projected(features):
    """CLIP's projected embedding: transformers 5 returns an output whose pooler_output holds it; 4.x a tensor."""
    return features if hasattr(features, "norm") else features.pooler_output


def clip_scores(rows: pd.DataFrame, context: AfterContext, wanted: set) -> dict:
    """CLIP-T (x 100) and CLIP-I per trial id, for the `wanted` of clip_score and clip_image."""
    import torch
    from transformers import CLIPModel, CLIPProcessor
    device, references = context.device, reference_paths(context.table)
    path = model_path("clip_score" if "clip_score" in wanted else "clip_image", context.models)
    model, processor = CLIPModel.from_pretrained(path).to(device).eval(), CLIPProcessor.from_pretrained(path)

    def embed_images(paths):
        out = []
        for images in image_batches(paths):
            pixels = processor(images=images, return_tensors="pt")["pixel_values"].to(device)
            out.append(torch.nn.functional.normalize(projected(model.get_image_features(pixel_values=pixels)), dim=-1))
        return torch.cat(out) if out else torch.zeros(0)

    values = {}
    with torch.no_grad():
        images = embed_images(list(rows.image_path))
        if "clip_score" in wanted:
            text = processor(text=list(rows.prompt), return_tensors="pt", padding=True, truncation=True).to(device)
            texts = torch.nn.functional.normalize(projected(model.get_text_features(**text)), dim=-1)
            for trial, score in zip(rows.trial_id, (images * texts).sum(-1).clamp(min=0) * 100):
                values.setdefault(trial, {})["clip_score"] = float(score)
        if "clip_image" in wanted:
            has = references[rows.index].notna()
            refs = embed_images(list(references[rows.index][has]))
            keep = torch.from_numpy(has.to_numpy().copy())
            for trial, score in zip(rows.trial_id[keep.numpy()], (images[keep] * refs).sum(-1)):
                values.setdefault(trial, {})["clip_image"] = float(score)
    return values


def dino_distances(rows: pd.DataFrame, context: AfterContext, wanted: set) -> dict:
    """1 - cosine similarity of DINOv2 CLS embeddings, image against its reference, per trial id."""
    import torch
    from transformers import AutoImageProcessor, AutoModel
    device, references = context.device, reference_paths(context.table)
    has = references[rows.index].notna().to_numpy()
    if not has.any():
        return {}
    path = model_path("dino", context.models)
    model, processor = AutoModel.from_pretrained(path).to(device).eval(), AutoImageProcessor.from_pretrained(path)

    def embed(paths):
        out = []
        for images in image_batches(paths):
            pixels = processor(images=images, return_tensors="pt")["pixel_values"].to(device)
            out.append(torch.nn.functional.normalize(model(pixel_values=pixels).last_hidden_state[:, 0], dim=-1))
        return torch.cat(out)

    with torch.no_grad():
        mine, refs = embed(list(rows.image_path[has])), embed(list(references[rows.index][has]))
    return {trial: {"dino_distance": float(1 - s)} for trial, s in zip(rows.trial_id[has], (mine * refs).sum(-1))}
