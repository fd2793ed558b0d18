"""Real photos shipped with the workbench, as control sources: `image: "sample:coffee"` beside `toy:<caption>`. No torch.

The five photos scikit-image ships in its wheel (`skimage.data`), copied into `workbench/assets/samples/` so that
`sample:` works in every install, notebooks included, without scikit-image. Each is credited and licensed as
scikit-image's own documentation says; `tests/test_samples.py` checks the hashes below, so a changed file is noticed.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from .shorten import short

SAMPLE_PREFIX = "sample:"
SAMPLE_FOLDER = Path(__file__).resolve().parent.parent / "assets" / "samples"


@dataclass(frozen=True)
class Sample:
    """One shipped photo: its file, size as stored (width x height), what it shows, whose it is, and its licence."""
    name: str
    file: str
    width: int
    height: int
    shows: str
    credit: str
    licence: str
    sha256: str

    @property
    def path(self) -> Path:
        return SAMPLE_FOLDER / self.file


SAMPLES = {sample.name: sample for sample in (
    Sample("astronaut", "astronaut.png", 512, 512, "astronaut Eileen Collins, portrait",
           "NASA (Great Images database)", "public domain",
           "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"),
    Sample("rocket", "rocket.jpg", 640, 427, "Falcon 9 lifting off with DSCOVR",
           "SpaceX (flickr.com/photos/spacexphotos)", "public domain",
           "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c"),
    Sample("coffee", "coffee.png", 600, 400, "a cup of coffee on a saucer, from above at an angle",
           "Rachel Michetti, courtesy of Pikolo Espresso Bar", "CC0",
           "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7"),
    Sample("chelsea", "chelsea.png", 451, 300, "Chelsea the cat", "Stefan van der Walt", "CC0",
           "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb"),
    Sample("camera", "camera.png", 512, 512, "the cameraman, greyscale", "Lav Varshney", "CC0",
           "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a"),
)}


def is_sample(source) -> bool:
    """True for a `sample:<name>` control source."""
    return isinstance(source, str) and source.startswith(SAMPLE_PREFIX)


def sample(source: str) -> Sample:
    """The shipped photo a `sample:<name>` source names; a ValueError listing the names for any other."""
    name = source[len(SAMPLE_PREFIX):] if is_sample(source) else source
    if name not in SAMPLES:
        close = difflib.get_close_matches(str(name), sorted(SAMPLES), n=1)
        raise ValueError(f"unknown sample photo {short(name)}" + (f" (did you mean {close[0]!r}?)" if close else "")
                         + f"; samples: {', '.join(SAMPLE_PREFIX + n for n in SAMPLES)}")
    return SAMPLES[name]
