"""Sentences the docker shows that are built from the backend's words. Pure Python."""

import html
import re

# the backend says this while it prepares its kernels before READY (backend/layeringdiff/prepare_kernels.py)
PREPARING_PREFIX = "PREPARING "
FIRST_START = ("The first start after installing compiles the image kernels (numba): up to a minute or two on a "
               "busy 2-core machine; later starts take seconds.")

_FETCH = re.compile(r"`layeringdiff models fetch ([^`]+)`")
_SIZE = re.compile(r"\(about [^)]*GB\)")
_TRAIN = re.compile(r"train them with `layeringdiff train fbdd` and `layeringdiff train hfa`")


def starting_status(seconds: float, phase: str) -> str:
    """Shown as "starting: <this>" while the backend process works towards READY."""
    return f"{seconds:.0f} s, {phase or 'loading the backend'}...\n{FIRST_START}"


def model_hint(detail: str, models_dir: str) -> str:
    """The backend's hint names its command-line option (--model NAME=/path); the docker has its own Models
    setting, so point there and at the fetch command that fills that folder."""
    if "--model" not in detail:
        return detail
    folder = models_dir or "FOLDER"
    steps = []
    fetch = _FETCH.search(detail)
    if fetch:
        size = _SIZE.search(detail)
        them = "it" if len(fetch.group(1).split()) == 1 else "them"
        steps.append(f"fetch {them} with `layeringdiff models fetch {fetch.group(1)} --models-dir {folder}`"
                     + (f" {size.group(0)}" if size else ""))
    if _TRAIN.search(detail):
        steps.append(f"train the layering weights (`layeringdiff train fbdd`, `layeringdiff train hfa`) into "
                     f"{folder}/layering")
    if not steps:
        steps.append(f"put the model in a sub-folder of {folder} named after it")
    then = (f"then press Apply and reconnect in this docker's Settings (Models is {models_dir})" if models_dir
            else f"then choose {folder} as Models in this docker's Settings and press Apply and reconnect")
    return ", and ".join(steps) + ", " + then


def status_html(state: str, text: str, colour: str) -> str:
    """The docker's status line as rich text: a coloured dot, the state, then the text as it is (a backend's
    traceback has `<module>` and the like, which rich text would swallow), line breaks kept."""
    return f"<span style='color:{colour}'>&#9679;</span> {html.escape(state)}: " + \
        html.escape(text).replace("\n", "<br>")
