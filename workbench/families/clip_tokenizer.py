"""CLIP's tokenizer files, written from the byte-pair merges the package ships (configs/clip, MIT-licensed).

SD1.x's tokenizer and both of SDXL's are CLIP's: 256 byte symbols, the same with `</w>` (a word's end),
one token per merge, and two specials, 49,408 tokens in all. A single-file checkpoint holds no
tokenizer, so loading one offline writes these files beside the bundled configs.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

MERGES = Path(__file__).parents[1] / "configs" / "clip" / "merges.txt.gz"
SPECIALS = ("<|startoftext|>", "<|endoftext|>")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map of the 256 bytes to printable characters, which CLIP's BPE uses."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = printable[:], 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes)))


def clip_merges() -> list[str]:
    """The 48,894 merges, in order ("i n", "t h", ...)."""
    return gzip.open(MERGES, "rt", encoding="utf-8").read().splitlines()


def write_clip_tokenizer(folder: Path, max_length: int = 77, pad_token: str = SPECIALS[1]) -> None:
    """A CLIPTokenizer folder (vocab.json, merges.txt, its configs); SDXL's second tokenizer pads with "!"."""
    merges = clip_merges()
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges] + list(SPECIALS)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False),
                                       encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    specials = {"bos_token": SPECIALS[0], "eos_token": SPECIALS[1], "pad_token": pad_token, "unk_token": SPECIALS[1]}
    (folder / "special_tokens_map.json").write_text(json.dumps(specials))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "CLIPTokenizer", "model_max_length": max_length, "do_lower_case": True, **specials}))
