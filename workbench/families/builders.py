"""Build Stable Diffusion components from configs, fully offline: the families' tiny and random models.

The parts are SD's (UNet2DConditionModel, AutoencoderKL, CLIPTextModel, ControlNetModel, a
DDIM scheduler with SD1.5's noise schedule), only narrower and shallower, so every workbench
code path is the real one. The families assemble them into pipelines (`sd15.build_tiny`,
`sdxl.build_tiny`); the toy world (`workbench.toy`) trains the same components.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

BOS, EOS = "<|startoftext|>", "<|endoftext|>"

# Words the tiny test model knows; the toy world brings its own corpus.
TINY_CORPUS = [
    "a red circle on a blue background",
    "a green square on a white background",
    "a yellow triangle on a black background",
    "a purple star on a gray background",
]


@dataclass
class ModelConfig:
    """Sizes of a small SD-style model. Defaults: the tiny test model (fast, random)."""
    image_size: int = 32                # pixels; the UNet's sample_size is image_size / vae_factor
    vae_channels: tuple = (16, 32)      # one entry per VAE block; n blocks downscale by 2**(n-1)
    vae_norm_groups: int = 8            # must divide every VAE channel count
    vae_mid_attention: bool = True      # SD1.5 has it; dropping it makes a small VAE train 2x faster
    unet_channels: tuple = (32, 64)     # one entry per UNet block
    layers_per_block: int = 1
    attention_head_dim: int = 8
    norm_num_groups: int = 8            # must divide every channel count
    text_width: int = 32                # CLIP hidden size = the UNet's cross_attention_dim
    text_layers: int = 2
    text_heads: int = 4
    max_length: int = 16                # prompt tokens; SD1.5 uses 77, short prompts need far fewer
    latent_channels: int = 4            # as in SD1.5

    @property
    def vae_factor(self) -> int:
        return 2 ** (len(self.vae_channels) - 1)

    @property
    def latent_size(self) -> int:
        assert self.image_size % self.vae_factor == 0, (self.image_size, self.vae_factor)
        return self.image_size // self.vae_factor


def learn_bpe(corpus: list[str]) -> tuple[dict, list]:
    """Byte-pair encoding (Sennrich et al. 2016) over the corpus's words, until each word is one token.

    Ties between equally frequent pairs go to the alphabetically largest pair, so the same
    corpus always gives the same vocabulary and ids. Every letter, alone and word-final, is
    in the vocabulary too, so an unknown word still spells out instead of vanishing.
    """
    counts = Counter(word for line in corpus for word in line.lower().split())
    pieces = {word: [*word[:-1], word[-1] + "</w>"] for word in counts}
    merges = []
    while True:
        pairs = Counter()
        for word, parts in pieces.items():
            for pair in zip(parts, parts[1:]):
                pairs[pair] += counts[word]
        if not pairs:
            break
        best = max(pairs, key=lambda pair: (pairs[pair], pair))
        merges.append(best)
        for word, parts in pieces.items():
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            pieces[word] = merged
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens = [BOS, EOS, *letters, *(c + "</w>" for c in letters)] + ["".join(pair) for pair in merges]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    return vocab, merges


def build_tokenizer(corpus: list[str], max_length: int = 16) -> CLIPTokenizer:
    """A CLIPTokenizer whose BPE was learnt on `corpus` (no hub files; one token per corpus word)."""
    vocab, merges = learn_bpe(corpus)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)


def build_text_encoder(cfg: ModelConfig, tokenizer: CLIPTokenizer) -> CLIPTextModel:
    """A CLIP text transformer sized by `cfg`, with random weights."""
    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.text_width, intermediate_size=cfg.text_width * 4,
        num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.text_heads,
        max_position_embeddings=cfg.max_length, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return CLIPTextModel(config)


def build_vae(cfg: ModelConfig) -> AutoencoderKL:
    """An AutoencoderKL that downscales by `cfg.vae_factor`, with random weights."""
    n = len(cfg.vae_channels)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=cfg.latent_channels,
        block_out_channels=tuple(cfg.vae_channels), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        norm_num_groups=cfg.vae_norm_groups, mid_block_add_attention=cfg.vae_mid_attention,
        sample_size=cfg.image_size)


def build_unet(cfg: ModelConfig) -> UNet2DConditionModel:
    """A text-conditioned UNet: plain down/up blocks outside, cross-attention inside."""
    n = len(cfg.unet_channels)
    down = ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1)
    up = ("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",)
    return UNet2DConditionModel(
        sample_size=cfg.latent_size, in_channels=cfg.latent_channels, out_channels=cfg.latent_channels,
        block_out_channels=tuple(cfg.unet_channels), layers_per_block=cfg.layers_per_block,
        down_block_types=down, up_block_types=up, cross_attention_dim=cfg.text_width,
        attention_head_dim=cfg.attention_head_dim, norm_num_groups=cfg.norm_num_groups)


def build_controlnet(cfg: ModelConfig, unet: UNet2DConditionModel) -> ControlNetModel:
    """A ControlNet copied from `unet`; its edge encoder downscales as much as the VAE does."""
    # The conditioning embedding halves the size once per entry after the first, and the
    # result must match the latent size, or the residual sum fails with a shape mismatch.
    cond_channels = tuple(16 * 2 ** i for i in range(len(cfg.vae_channels)))
    return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=cond_channels)


def wake_zero_convs(controlnet: ControlNetModel, std: float = 0.05, seed: int = 0) -> None:
    """Give the ControlNet's zero-initialised output convolutions random weights.

    A fresh ControlNet adds exactly zero to the UNet, so its conditioning scale changes
    nothing until it is trained. Tests of an untrained model use this so scale matters.
    """
    gen = torch.Generator().manual_seed(seed)
    convs = list(controlnet.controlnet_down_blocks) + [controlnet.controlnet_mid_block]
    with torch.no_grad():
        for conv in convs:
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * std)


def build_scheduler() -> DDIMScheduler:
    """DDIM with SD1.5's noise schedule (scaled-linear betas 0.00085 to 0.012, 1000 steps)."""
    return DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                         beta_schedule="scaled_linear", clip_sample=False,
                         set_alpha_to_one=False, steps_offset=1)
