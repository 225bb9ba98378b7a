"""The docker's own wording of the backend's hints."""

from layeringdiff_krita.messages import model_hint, starting_status
from layeringdiff_krita.naming import group_name, layer_names, next_index, type_name, unique, with_article


def test_one_missing_model_points_at_the_fetch_command_and_the_models_setting():
    detail = ("fetch it with `layeringdiff models fetch sam` (about 0.4 GB), or put a downloaded copy in a folder and "
              "name it: `--model sam=/path/to/folder` or \"paths\": {\"sam\": \"/path/to/folder\"} in models.json")
    hint = model_hint(detail, "")
    assert hint == ("fetch it with `layeringdiff models fetch sam --models-dir FOLDER` (about 0.4 GB), then choose "
                    "FOLDER as Models in this docker's Settings and press Apply and reconnect")
    assert "--models-dir /m`" in model_hint(detail, "/m") and "(Models is /m)" in model_hint(detail, "/m")


def test_trained_weights_are_named_with_their_folder():
    detail = ("fetch them with `layeringdiff models fetch sdxl sam`, or name local folders with --model "
              "NAME=/path/to/folder (or \"paths\" in models.json); the layering weights: no public FBDD/HFA weights "
              "exist: train them with `layeringdiff train fbdd` and `layeringdiff train hfa` (README)")
    hint = model_hint(detail, "/m")
    assert "fetch them with `layeringdiff models fetch sdxl sam --models-dir /m`" in hint
    assert "into /m/layering" in hint and "--model " not in hint


def test_other_hints_pass_through():
    assert model_hint("install torch first", "") == "install torch first"


def test_starting_status_says_why_it_is_slow():
    text = starting_status(42.4, "compiling the matting kernels")
    assert text.startswith("42 s, compiling the matting kernels...") and "first start" in text


def test_names_read_front_to_back_and_never_repeat():
    assert layer_names(1, "cat") == ("1 cat", "background 1")
    assert layer_names(2, "") == ("2 foreground", "background 2")
    assert layer_names(2, "", ["background 2"]) == ("2 foreground", "background 2 2")
    assert next_index(["background 1", "1 cat", "2 ball", "background 2"]) == 3
    assert group_name("photo", "", ["photo"]) == "photo split"
    assert group_name("background 1", "", []) == "background 1 split"
    assert unique("cat", ["cat", "cat 2"]) == "cat 3"


def test_krita_type_ids_become_words():
    assert type_name("grouplayer") == "group layer" and with_article("vectorlayer") == "a vector layer"
    assert with_article("filelayer") == "a file layer" and with_article("transparencymask") == "a transparency mask"


def test_the_status_line_shows_a_backends_error_output_as_it_is():
    from layeringdiff_krita.messages import status_html

    text = 'the backend exited (code 1):\n  File "<frozen runpy>", line 198, in <module>\nValueError: a < b & c'
    out = status_html("lost", text, "#d33")
    assert out.startswith("<span style='color:#d33'>&#9679;</span> lost: ")
    assert "&lt;frozen runpy&gt;" in out and "&lt;module&gt;" in out and "a &lt; b &amp; c" in out
    assert out.count("<br>") == 2 and "\n" not in out


def test_the_fills_the_docker_and_the_cli_offer_are_the_backends():
    """The plugin has no backend to import the fill names from: its list must agree with the backend's
    (options.py, which the CLI's --fill reads), the backend's default first."""
    from layeringdiff.cli import build_parser
    from layeringdiff.options import DEFAULT_FILL, FILLS
    from layeringdiff_krita.controller import FILLS as DOCKER_FILLS

    parser = build_parser()
    assert parser.parse_args(["split", "in.png", "-o", "out.ora"]).fill == DEFAULT_FILL == FILLS[0]
    chosen = [parser.parse_args(["split", "in.png", "-o", "out.ora", "--fill", name]).fill for name in FILLS]
    assert chosen == list(FILLS)
    assert tuple(DOCKER_FILLS) == FILLS


def test_the_mattings_the_docker_and_the_cli_offer_are_the_backends():
    from layeringdiff.cli import build_parser
    from layeringdiff.options import MATTINGS, SplitOptions
    from layeringdiff_krita.controller import MATTINGS as DOCKER_MATTINGS

    parser = build_parser()
    assert parser.parse_args(["split", "in.png", "-o", "out.ora"]).matting == SplitOptions().matting == MATTINGS[0]
    assert tuple(DOCKER_MATTINGS) == MATTINGS
