"""The README's sentence of toy-model figures, read from the model card's measured block.

The card's quality block (written by `toy_quality.py --write-card`) is the one source of
truth; the README quotes it between `<!-- card-facts:start -->` and `<!-- card-facts:end -->`,
and `toy_quality.py --write-card` rewrites both. `tests/test_readme.py` checks they agree.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CARD = ROOT / "workbench" / "assets" / "toy" / "README.md"
README = ROOT / "README.md"
BLOCK = re.compile(r"<!-- card-facts:start -->.*?<!-- card-facts:end -->", re.S)


def card_figures(card_text: str) -> dict:
    """Colour accuracy, edge F1 without control and at scale 1, and the batch-of-8 time, from the card."""
    images = re.search(r"\*\*Prompt fidelity\*\* \((\d+) images", card_text).group(1)
    both = float(re.search(r"both ([\d.]+)%", card_text).group(1))
    f1 = {float(scale): float(f) for scale, f in re.findall(r"^\| ([\d.]+) \| [\d.]+ \| [\d.]+ \| ([\d.]+) \|", card_text, re.M)}
    seconds = re.search(r"batch 8, with CFG: ([\d.]+) s", card_text).group(1)
    return {"images": int(images), "both": both, "f1_off": f1[0.0], "f1_on": f1[1.0], "seconds": seconds}


def readme_sentence(card_text: str) -> str:
    """The README's sentence, with the card's numbers exactly as the card prints them."""
    f = card_figures(card_text)
    right = round(f["images"] * f["both"] / 100)
    return (f"<!-- card-facts:start -->prompt colours right in {right} of {f['images']} images, edge F1 "
            f"{f['f1_off']:.3f} without control and {f['f1_on']:.3f} at conditioning scale 1, a batch of 8 "
            f"images in {f['seconds']} s on a 2-core CPU<!-- card-facts:end -->")


def update_readme() -> None:
    """Rewrite the README's card-facts sentence from the card."""
    text = README.read_text()
    README.write_text(BLOCK.sub(readme_sentence(CARD.read_text()), text))
