"""LoRA: W' = W + (alpha / r) * B @ A on the UNet's attention projections (and, from other tools, the text encoders).

    train.py     train an adapter on (image, caption) pairs, one per rank with a cache; random ones for benchmarks
    prepare.py   what training reads, computed once: latents (chunked, fp16 when large), text embeddings, the loss
    folder.py    a folder of captioned images (Hugging Face imagefolder or kohya-ss layout) as a dataset
    files.py     read the kohya/A1111, diffusers and peft formats; write with settings; one cache key
    convert.py   write a LoRA in kohya's layout (A1111, ComfyUI) or back in diffusers'
    adapters.py  an adapter on a pipeline: load, switch on and off, blend, fuse, unload, summarise
    analysis.py  how much rank an adapter uses: singular values, and rank ladders cut by SVD

Alpha policy: alpha defaults to r, so alpha / r = 1 at every rank and a rank sweep compares
ranks at the same scale (kohya's default alpha = 1 would scale a rank-128 adapter by 1/128).
`use_rslora=True` scales by alpha / sqrt(r) instead (Kalajdzievski 2023). The rank study,
which runs sweeps and draws plots, is a study tool beside the engine (`workbench.ranks`).
"""

from .adapters import (activate_lora, adapter_layer_counts, blend_adapters, fuse, fused_lora, load_lora,
                       loaded_adapters, loaded_from, lora_components, lora_disabled, lora_off, lora_summary,
                       text_encoder_weight, unfuse, unload_adapter)
from .analysis import lora_delta_spectrum, lora_rank_ladder, norm_kept_table
from .convert import convert_lora
from .files import inspect_lora_file, read_lora_metadata
from .folder import ImageFolder, image_folder
from .prepare import training_pairs
from .train import DEFAULT_STEPS, TARGET_MODULES, random_lora, train_lora, train_lora_ranks

__all__ = ["DEFAULT_STEPS", "convert_lora", "ImageFolder", "TARGET_MODULES", "image_folder", "activate_lora", "adapter_layer_counts", "blend_adapters", "fuse", "fused_lora",
           "inspect_lora_file", "load_lora", "loaded_adapters", "loaded_from", "lora_components", "lora_delta_spectrum",
           "lora_disabled", "lora_off", "lora_rank_ladder", "lora_summary", "norm_kept_table", "random_lora",
           "read_lora_metadata", "text_encoder_weight", "train_lora", "train_lora_ranks", "training_pairs", "unfuse", "unload_adapter"]
