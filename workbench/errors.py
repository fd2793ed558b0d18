"""Errors workbench raises on purpose, with messages that say what to do next."""

from __future__ import annotations


class ModelNotAvailableError(FileNotFoundError):
    """The model's weights are neither on this machine nor downloadable from here."""

    reason: str = ""  # why the hub could not be asked (HF_HUB_OFFLINE=1, the connection error's name)


def download_command(*model_ids: str) -> str:
    """How to download repositories: huggingface_hub's `hf` command, or the `huggingface-cli` of older versions."""
    newer = " and ".join(f"`hf download {model_id}`" for model_id in model_ids)
    older = " and ".join(f"`huggingface-cli download {model_id}`" for model_id in model_ids)
    return f"{newer} (with huggingface_hub before 0.34: {older})"


def model_not_available(model_id: str, what: str, reason: str) -> ModelNotAvailableError:
    """Build the error for weights that are missing offline: names the model, says what to do."""
    return models_not_available([(model_id, what, None)], reason)


def models_not_available(missing: list[tuple[str, str, float | None]], reason: str) -> ModelNotAvailableError:
    """The error for every model a load needs that is missing: (id, what it is, download size in GB or None) each,
    with the total size, so one download fetches them all."""
    from huggingface_hub import constants
    names = "; ".join(f"{what} {model_id!r}" + (f" (about {size:g} GB)" if size else "")
                      for model_id, what, size in missing)
    sizes = [size for _, _, size in missing if size]
    total = f", about {sum(sizes):g} GB in all" if len(missing) > 1 and len(sizes) == len(missing) else ""
    commands = download_command(*(model_id for model_id, _, _ in missing))
    error = ModelNotAvailableError(
        f"Cannot load {names}: not in the local Hugging Face cache ({constants.HF_HUB_CACHE}){total}, and the hub "
        f"is unreachable ({reason}).\n"
        f"What to do:\n"
        f"  - on a connected machine run {commands}, then copy the cache here or point HF_HOME at it;\n"
        f"  - or pass a local folder in diffusers layout;\n"
        f"  - or use the embedded toy model: load_pipeline('toy').")
    error.reason = reason
    return error
