"""The split's options in one light module (options.py): checked however they are made, read by the CLI without
numpy, and the layer methods no longer import the split that imports them."""

import subprocess
import sys

import pytest
from layeringdiff.errors import InputError
from layeringdiff.options import BAND_RANGE, FILLS, SplitOptions


@pytest.mark.parametrize(("options", "words"), [
    ({"alpha_mode": "soft"}, "alpha_mode must be one of"),
    ({"quantize": 0}, "quantize must be an integer in 1..65535"),
    ({"quantize": 65536}, "quantize must be an integer in 1..65535"),
    ({"quantize": True}, "quantize must be an integer"),  # a bool is no level count
    ({"band": 0}, "band must be an integer in 1..500 pixels"),
    ({"band": 501}, "band must be an integer in 1..500 pixels"),
    ({"band": 2.5}, "band must be an integer"),
    ({"fill": "blur"}, "fill must be one of ('texture', 'smooth', 'lama')"),
])
def test_options_are_checked_however_they_are_made(options, words):
    for make in (SplitOptions.from_dict, lambda o: SplitOptions(**o)):
        with pytest.raises(InputError, match=words.replace("(", r"\(").replace(")", r"\)")):
            make(options)


def test_the_ranges_ends_are_allowed_and_unknown_keys_are_named():
    lo, hi = BAND_RANGE
    assert SplitOptions(band=lo).band == lo and SplitOptions(band=hi).band == hi
    assert SplitOptions(quantize=1).quantize == 1 and SplitOptions(quantize=65535).quantize == 65535
    assert [SplitOptions(fill=f).fill for f in FILLS] == list(FILLS)
    assert SplitOptions.from_dict({}) == SplitOptions()
    with pytest.raises(InputError, match="unknown split option.s.: radius, zz"):
        SplitOptions.from_dict({"radius": 3, "zz": 1, "band": 3})


def _imported_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint(' '.join(sorted(sys.modules)))"
    return set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())


def test_the_options_module_is_light():
    modules = _imported_after("import layeringdiff.options")
    assert "numpy" not in modules and not any(m.startswith("layeringdiff.stages") for m in modules)


def test_the_layer_methods_do_not_import_the_split():
    """classical.py and split.py imported each other (split's default method, classical's names)."""
    assert "layeringdiff.stages.split" not in _imported_after("import layeringdiff.stages.classical")
