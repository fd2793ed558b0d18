"""Errors workbench raises on purpose, with messages that say what to do next."""

from __future__ import annotations


class ModelNotAvailableError(FileNotFoundError):
    """The model's weights are neither on this machine nor downloadable from here."""


def model_not_available(model_id: str, what: str, reason: str) -> ModelNotAvailableError:
    """Build the error for weights that are missing offline: names the model, says what to do."""
    from huggingface_hub import constants
    return ModelNotAvailableError(
        f"Cannot load {what} {model_id!r}: its weights are not in the local Hugging Face cache "
        f"({constants.HF_HUB_CACHE}) and the hub is unreachable ({reason}).\n"
        f"What to do:\n"
        f"  - on a connected machine run `huggingface-cli download {model_id}` (or `hf download {model_id}`), "
        f"then copy the cache here or point HF_HOME at it;\n"
        f"  - or pass a local folder in diffusers layout;\n"
        f"  - or use the embedded toy model: load_pipeline('toy').")
