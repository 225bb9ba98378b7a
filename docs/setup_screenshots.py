"""The README's setup screenshots: the right-hand dock column of the whole-screen shots that
tests/krita/test_release_zip.py takes in the real Krita (tests/krita/artifacts/<version>/setup_*.png).

    python docs/setup_screenshots.py        # after `pytest tests/krita/test_release_zip.py --krita=host,6.0`
"""

from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "krita" / "artifacts"
SHOTS = {"setup_1_needed.png": ("5.1.5", "setup_1_needed.png"), "setup_2_failed.png": ("5.1.5", "setup_2_failed.png"),
         "setup_3_running.png": ("5.1.5", "setup_3_running.png"), "setup_5_split.png": ("5.1.5", "setup_5_split.png"),
         "setup_krita6_needed.png": ("6.0.4.1", "setup_1_needed.png")}
COLUMN = 0.36  # the dockers' share of the screen's width


def main() -> None:
    for name, (version, shot) in SHOTS.items():
        source = ARTIFACTS / version / shot
        with Image.open(source) as image:
            w, h = image.size
            image.crop((int(w * (1 - COLUMN)), 0, w, h)).save(ROOT / "docs" / name, optimize=True)
        print(f"docs/{name} <- {source.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
