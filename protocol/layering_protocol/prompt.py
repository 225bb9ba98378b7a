"""Prompt syntax shared by the docker and the backend: "[a bird flying] at sunset over the mountains".

Bracketed spans are the foreground phrases (the paper's index set I_F), front to back; the prompt sent
to the generator is the text without the brackets.
"""

import re
from typing import List, Tuple

_BRACKET = re.compile(r"\[([^\[\]]*)\]")


def parse_prompt(text: str) -> Tuple[str, List[str]]:
    """-> (prompt without brackets, foreground phrases in order). Unbalanced brackets are an error."""
    phrases = [p.strip() for p in _BRACKET.findall(text)]
    if any(not p for p in phrases):
        raise ValueError("empty [] in the prompt: put the foreground words inside the brackets")
    plain = _BRACKET.sub(lambda m: m.group(1), text)
    if "[" in plain or "]" in plain:
        raise ValueError("unbalanced [ ] in the prompt: mark each foreground phrase as [words]")
    return " ".join(plain.split()), phrases


def background_prompt(text: str) -> str:
    """The scene without its foreground phrases: "[a cat] on a sofa" -> "on a sofa"."""
    return " ".join(_BRACKET.sub(" ", text).split())
