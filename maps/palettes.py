"""Colours: the conventional land-use palette (residential yellow, commercial red, industrial
purple, green space green, education blue, ... as planning maps draw them, after the APA's
LBCS colour conventions), with the Persian and English names a municipal export uses, and
ColorBrewer schemes (via branca) for everything else."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import branca

LANDUSE = "landuse"  # the palette name for the land-use colours
OTHER_COLOR = "#bdbdbd"  # a category the palette has no colour for
NO_DATA_COLOR = "#e0e0e0"
PLAIN_COLOR = "#2b6cb0"
DEFAULT_SEQUENTIAL = "YlOrRd"
DEFAULT_QUALITATIVE = "Set2"
WEIGHT_COLOR = "#c0392b"


@dataclass(frozen=True)
class LandUseClass:
    key: str
    color: str
    en: str
    fa: str
    synonyms: tuple[str, ...]  # English and Persian spellings seen in municipal data

    def label(self, lang: str) -> str:
        return self.fa if lang == "fa" else self.en


LANDUSE_CLASSES: tuple[LandUseClass, ...] = (
    LandUseClass("residential", "#f6d743", "Residential", "مسکونی",
                 ("residential", "housing", "dwelling", "res", "مسکونی")),
    LandUseClass("commercial", "#e63946", "Commercial", "تجاری",
                 ("commercial", "retail", "business", "shops", "تجاری", "بازرگانی")),
    LandUseClass("mixed", "#f4a261", "Mixed use", "مختلط",
                 ("mixed", "mixed use", "mixed-use", "مختلط", "مختلط مسکونی تجاری")),
    LandUseClass("industrial", "#7b5ea7", "Industrial", "صنعتی",
                 ("industrial", "industry", "manufacturing", "صنعتی", "کارگاهی")),
    LandUseClass("green", "#4caf50", "Green space", "فضای سبز",
                 ("green space", "green", "park", "parks", "open space", "recreation",
                  "فضای سبز", "پارک", "تفریحی")),
    LandUseClass("education", "#3d7dd8", "Education", "آموزشی",
                 ("education", "educational", "school", "schools", "university",
                  "آموزشی", "آموزش", "آموزش عالی")),
    LandUseClass("health", "#48cae4", "Health", "درمانی",
                 ("health", "healthcare", "hospital", "medical", "درمانی", "بهداشتی",
                  "بهداشتی درمانی")),
    LandUseClass("administrative", "#1d3f8f", "Administrative", "اداری",
                 ("administrative", "government", "civic", "public", "institutional",
                  "اداری", "انتظامی", "اداری انتظامی")),
    LandUseClass("transport", "#8d99ae", "Transport", "حمل‌ونقل",
                 ("transport", "transportation", "road", "roads", "parking", "حمل ونقل",
                  "حمل و نقل", "معابر", "پارکینگ", "حمل‌ونقل و انبار")),
    LandUseClass("vacant", "#ede6d6", "Vacant", "بایر",
                 ("vacant", "undeveloped", "empty", "بایر", "خالی", "زمین خالی")),
    LandUseClass("agriculture", "#b5c99a", "Agriculture", "کشاورزی",
                 ("agriculture", "agricultural", "farm", "farmland", "orchard", "کشاورزی",
                  "باغ", "زراعی")),
    LandUseClass("water", "#74b3e8", "Water", "آب",
                 ("water", "river", "lake", "آب", "رودخانه", "دریاچه")),
    LandUseClass("religious", "#a1887f", "Religious", "مذهبی",
                 ("religious", "mosque", "church", "مذهبی")),
    LandUseClass("cultural", "#d291bc", "Cultural", "فرهنگی",
                 ("cultural", "culture", "فرهنگی", "فرهنگی هنری")),
    LandUseClass("sports", "#2d6a4f", "Sports", "ورزشی", ("sports", "sport", "ورزشی")),
    LandUseClass("military", "#6d6875", "Military", "نظامی", ("military", "نظامی")),
    LandUseClass("utilities", "#5c677d", "Utilities", "تأسیسات",
                 ("utilities", "utility", "infrastructure", "تأسیسات", "تاسیسات",
                  "تجهیزات شهری", "تأسیسات و تجهیزات شهری")),
)

_ARABIC_FORMS = str.maketrans({"ي": "ی", "ى": "ی", "ك": "ک", "ة": "ه", "ۀ": "ه",
                               "\u200c": " ", "_": " ", "-": " "})
_SPACES = re.compile(r"\s+")


def normalise(value: object) -> str:
    """A category value folded for matching: case, Arabic letter forms, ZWNJ and dashes."""
    return _SPACES.sub(" ", str(value).translate(_ARABIC_FORMS)).strip().lower()


@cache
def _landuse_index() -> dict[str, LandUseClass]:
    index: dict[str, LandUseClass] = {}
    for cls in LANDUSE_CLASSES:
        for word in (cls.key, cls.en, cls.fa, *cls.synonyms):
            index.setdefault(normalise(word), cls)
    return index


def landuse_class(value: object) -> LandUseClass | None:
    if value is None:
        return None
    return _landuse_index().get(normalise(value))


def landuse_spellings() -> dict[str, str]:
    """Every spelling the palette knows -> its colour (for the vector-tile style function,
    which sees raw values)."""
    out: dict[str, str] = {}
    for cls in LANDUSE_CLASSES:
        for word in (cls.key, cls.en, cls.fa, *cls.synonyms):
            out.setdefault(word, cls.color)
            out.setdefault(word.lower(), cls.color)
    return out


@cache
def _scheme_info() -> dict[str, str]:
    path = Path(branca.__file__).parent / "scheme_info.json"
    return json.loads(path.read_text(encoding="utf-8"))


def palette_names() -> list[str]:
    """Accepted `palette` values: `landuse` and every ColorBrewer scheme branca ships (also
    reversed, with `_r`)."""
    names = sorted(_scheme_info())
    return [LANDUSE, *names, *(f"{n}_r" for n in names)]


def is_qualitative(name: str) -> bool:
    return _scheme_info().get(name.removesuffix("_r")) == "Qualitative"


def colors(name: str, n: int) -> list[str]:
    """n colours of a ColorBrewer scheme; a qualitative scheme repeats past its length."""
    if n <= 0:
        return []
    if is_qualitative(name):
        longest = _longest_qualitative(name.removesuffix("_r"))
        base = branca.utilities.color_brewer(name, longest)
        return [base[i % len(base)] for i in range(n)]
    got = branca.utilities.color_brewer(name, max(n, 3))
    if n >= 3:
        return got
    return [got[0], got[-1]][:n] if n == 2 else [got[-1]]


@cache
def _longest_qualitative(base: str) -> int:
    path = Path(branca.__file__).parent / "_schemes.json"
    schemes = json.loads(path.read_text(encoding="utf-8"))
    return max(int(k.split("_")[1]) for k in schemes if k.startswith(f"{base}_"))
