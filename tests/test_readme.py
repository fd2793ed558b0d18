"""The README quotes the model card's measured figures, and nothing of its own."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import card_facts  # noqa: E402


def test_readme_figures_are_the_cards():
    card = card_facts.CARD.read_text()
    assert card_facts.readme_sentence(card) in card_facts.README.read_text()


def test_the_sentence_follows_the_card_when_it_changes():
    card = card_facts.CARD.read_text().replace("| 1.0 | 0.935 | 0.986 | 0.959 |", "| 1.0 | 0.935 | 0.986 | 0.777 |")
    assert "0.777 at conditioning scale 1" in card_facts.readme_sentence(card)
