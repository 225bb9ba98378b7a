"""The README's setup screenshots, from what tests/krita/test_release_zip.py saves in the real Krita
(tests/krita/artifacts/<version>/setup_*.png): the docker alone at each step, and the whole window after the split.

    python docs/setup_screenshots.py    # after `pytest tests/krita/test_release_zip.py --krita=host,6.0`
"""

import shutil
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "krita" / "artifacts"
DOCKER = {"setup_1_needed.png": ("5.1.5", "setup_1_needed_docker.png"),
          "setup_2_failed.png": ("5.1.5", "setup_2_failed_docker.png"),
          "setup_3_running.png": ("5.1.5", "setup_3_running_docker.png"),
          "setup_6_update.png": ("6.0.4.1", "setup_6_update_docker.png"),
          "setup_7_models.png": ("6.0.4.1", "setup_7_models_docker.png"),
          "setup_krita6_needed.png": ("6.0.4.1", "setup_1_needed_docker.png")}
SCREEN = {"setup_5_split.png": ("5.1.5", "setup_5_split.png")}
WIDTH = 1000  # whole-window shots are scaled to this width


def main() -> None:
    for name, (version, shot) in DOCKER.items():
        shutil.copy2(ARTIFACTS / version / shot, ROOT / "docs" / name)
        print(f"docs/{name} <- {version}/{shot}")
    for name, (version, shot) in SCREEN.items():
        with Image.open(ARTIFACTS / version / shot) as image:
            h = round(image.height * WIDTH / image.width)
            image.convert("RGB").resize((WIDTH, h), Image.LANCZOS).save(ROOT / "docs" / name, optimize=True)
        print(f"docs/{name} <- {version}/{shot} (scaled to {WIDTH} px)")


if __name__ == "__main__":
    main()
