"""Names of the layers LayeringDiff adds, and how messages name Krita's node types. Pure Python.

Inside one LayeringDiff group the foregrounds are numbered front to back ("1 cat", "2 ball") and each
background says how many foregrounds are taken out of it ("background 1", "background 2"), so a peel
never repeats a name and the numbers read as depth.
"""

import re
from typing import Iterable, List, Optional, Tuple

# Krita's node type ids -> words for messages
TYPE_NAMES = {
    "paintlayer": "paint layer", "grouplayer": "group layer", "vectorlayer": "vector layer",
    "filelayer": "file layer", "filterlayer": "filter layer", "filllayer": "fill layer",
    "clonelayer": "clone layer", "transparencymask": "transparency mask", "filtermask": "filter mask",
    "transformmask": "transform mask", "selectionmask": "selection mask", "colorizemask": "colorize mask",
}

_FOREGROUND = re.compile(r"^(\d+) \S")
_BACKGROUND = re.compile(r"^background \d+$")
_DEFAULT_MASK = re.compile(r"^(selection mask|local selection|selection)( \d+)?$", re.IGNORECASE)  # Krita's own names
LABEL_LAYER = re.compile(r"^labels?\b", re.IGNORECASE)  # a layer painted in flat colours, one per object
_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")
_ALMOST_COLOUR = re.compile(r"#[0-9a-fA-F]{4,8}")
FOREGROUND_WORD = "foreground"
OBJECT_WORD = "object"  # an object of a split into layers that has no name


def type_name(kind: str) -> str:
    return TYPE_NAMES.get(kind, kind)


def with_article(kind: str) -> str:
    words = type_name(kind)
    return ("an " if words[0] in "aeiou" else "a ") + words


def unique(name: str, taken: Iterable[str]) -> str:
    """name, or name 2, name 3... whichever is not taken yet."""
    taken = set(taken)
    if name not in taken:
        return name
    n = 2
    while f"{name} {n}" in taken:
        n += 1
    return f"{name} {n}"


def foreground_number(name: str) -> Optional[int]:
    match = _FOREGROUND.match(name)
    return int(match.group(1)) if match else None


def is_background(name: str) -> bool:
    return bool(_BACKGROUND.match(name))


def group_name(source: str, phrase: str, taken: Iterable[str]) -> str:
    """The group a split makes: the phrase, else '<source> split'; never a name the document has."""
    return unique(phrase or f"{source} split", taken)


def layer_names(index: int, phrase: str, taken: Iterable[str] = ()) -> Tuple[str, str]:
    """(foreground, background) names for the index-th object of a group, front to back."""
    taken = set(taken)
    foreground = unique(f"{index} {phrase or FOREGROUND_WORD}", taken)
    return foreground, unique(f"background {index}", taken | {foreground})


def next_index(sibling_names: Iterable[str]) -> int:
    """1 + the highest foreground number among a group's layers."""
    numbers = [n for n in (foreground_number(s) for s in sibling_names) if n is not None]
    return 1 + max(numbers, default=0)


def object_name(mask_name: str) -> str:
    """An object's name from its selection mask's: the mask's own, or "object" for a name Krita gave it."""
    name = mask_name.strip()
    return OBJECT_WORD if not name or _DEFAULT_MASK.match(name) else name


def stack_names(objects: List[str]) -> Tuple[List[str], str]:
    """(the objects' layer names, the background's) for a group of several objects, front first."""
    return [f"{i} {name}" for i, name in enumerate(objects, 1)], f"background {len(objects)}"


def colour_codes(text: str) -> Optional[List[str]]:
    """'#c8281e; #145adc' -> ['#c8281e', '#145adc']: a label layer's colours front first, as the layers of its
    split are named. None when the text is anything else (a phrase), or empty."""
    words = [w for w in re.split(r"[;,\s]+", text.strip()) if w]
    if not words or not all(_COLOUR.fullmatch(w) for w in words):
        return None
    return [w.lower() for w in words]


def mistyped_colour(text: str) -> Optional[str]:
    """The first word that looks like a colour code with a digit too many or too few ('#3cb42'), else None."""
    return next((w for w in re.split(r"[;,\s]+", text.strip()) if _ALMOST_COLOUR.fullmatch(w)
                 and not _COLOUR.fullmatch(w)), None)


def object_colours(info: dict) -> List[Optional[str]]:
    """A split into layers' objects front to back as the colours of their label layer ("#rrggbb"), None for one
    the result's `info.colours` does not name."""
    colours = list(info.get("colours") or [])
    return [colours[k - 1] if 0 < k <= len(colours) else None for k in info.get("objects") or []]
