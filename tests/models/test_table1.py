"""Table 1 (evaluate --table 1) with tiny random models of the real classes: prompt files, FID and KID through
torchmetrics (a small feature extractor in place of Inception, whose weights are not here), the CLIP score with a
tiny CLIP, and FG-MIoU through Grounding DINO and SAM."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from layeringdiff.errors import InputError
from layeringdiff.examples import synthetic_composite
from layeringdiff.models import ModelConfig, ModelManager
from layeringdiff.table1 import Layered, Triplet, fid_kid, read_prompts, table1, write_table1

pytest.importorskip("torchmetrics", reason="the ml extra is not installed")


class Features(torch.nn.Module):
    """(N, 3, H, W) uint8 or float images -> (N, 16) features: a fixed random projection of an 8x8 thumbnail."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.project = torch.nn.Linear(3 * 8 * 8, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.nn.functional.interpolate(x.float(), size=(8, 8)).flatten(1))


def tiny_clip():
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    from tests.models.tiny import _clip_tokenizer

    tokenizer, vocab = _clip_tokenizer()
    config = CLIPConfig(text_config={"vocab_size": vocab, "hidden_size": 16, "intermediate_size": 32,
                                     "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 77},
                        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
                        projection_dim=8)
    torch.manual_seed(1)
    processor = CLIPProcessor(image_processor=CLIPImageProcessorPil(size={"shortest_edge": 32},
                                                                     crop_size={"height": 32, "width": 32}),
                              tokenizer=tokenizer)
    return CLIPModel(config).eval(), processor


def layered(n: int) -> list[Layered]:
    items = []
    for i in range(n):
        comp, alpha, fg, bg = synthetic_composite(48, 64, seed=i)
        items.append(Layered(Triplet("a cat", "a sofa", "a cat on a sofa"), np.dstack([fg, alpha]), bg, comp))
    return items


def test_prompt_files_in_either_form_and_their_errors(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text('# the paper made 572 of these\n a red fox | a snowy forest | a red fox in a snowy forest \n\n'
                    '{"foreground": "a cat", "background": "a sofa", "composite": "a cat on a sofa"}\n')
    assert read_prompts(path) == [Triplet("a red fox", "a snowy forest", "a red fox in a snowy forest"),
                                  Triplet("a cat", "a sofa", "a cat on a sofa")]
    path.write_text("a fox | a forest\n")
    with pytest.raises(InputError, match="line 1: not a prompt triplet"):
        read_prompts(path)
    path.write_text("a fox |  | a fox\n")
    with pytest.raises(InputError, match="line 1: a prompt of the triplet is empty"):
        read_prompts(path)
    path.write_text("# nothing\n")
    with pytest.raises(InputError, match="holds no prompt triplet"):
        read_prompts(path)


def test_fid_and_kid_are_torchmetrics_own_near_0_for_the_same_set_and_grow_with_the_difference():
    rng = np.random.default_rng(0)
    real = [rng.uniform(0, 1, (32, 32, 3)).astype(np.float32) for _ in range(12)]
    same = fid_kid(real, real, Features(), size=32)
    darker = fid_kid(real, [im * 0.5 for im in real], Features(), size=32)
    assert abs(same["FID"]) < 1e-3 and abs(same["KID"]) < 0.05  # KID's unbiased estimate scatters around 0
    assert darker["FID"] > 0.1 and darker["KID"] > same["KID"] + 0.05


def test_table_1_has_every_metric_for_every_layer(tiny_models, tmp_path):
    root, _ = tiny_models
    manager = ModelManager(ModelConfig.load().with_models_dir(str(root)))
    items = layered(4)
    rng = np.random.default_rng(1)
    references = {"foreground": [np.dstack([rng.uniform(0, 1, (40, 40, 3)), np.ones((40, 40))]) for _ in range(4)],
                  "scene": [rng.uniform(0, 1, (40, 40, 3)) for _ in range(4)]}
    result = table1(items, references, manager, tiny_clip, feature=Features(), size=32)
    rows = result["rows"]
    assert result["count"] == 4 and set(rows) == {"foreground", "background", "composite"}
    for kind, row in rows.items():
        assert np.isfinite(row["FID"]) and np.isfinite(row["KID"]) and 0 <= row["CLIP score"] <= 100, (kind, row)
    assert 0 <= rows["foreground"]["FG-MIoU"] <= 1 and 0 <= rows["background"]["FG-MIoU"] <= 1
    assert "FG-MIoU" not in rows["composite"]
    _, md = write_table1(result, tmp_path)
    text = md.read_text()
    assert "| foreground |" in text and "| composite |" in text and "FG-MIoU: higher is better" in text


def test_the_cli_generates_each_triplets_layers_then_says_what_fid_needs(tiny_models, tmp_path):
    from layeringdiff.io.images import save_png

    root, _ = tiny_models
    (tmp_path / "prompts.txt").write_text("a cat | a sofa | [a cat] on a sofa\n")
    for name in ("fg", "scene"):
        (tmp_path / name).mkdir()
        for i in range(2):
            save_png(tmp_path / name / f"{i}.png", np.full((16, 16, 3), 0.2 * (i + 1), np.float32))
    proc = subprocess.run([sys.executable, "-m", "layeringdiff", "evaluate", "--table", "1", "--prompts",
                           str(tmp_path / "prompts.txt"), "--reference-fg", str(tmp_path / "fg"), "--reference-scene",
                           str(tmp_path / "scene"), "--gen-size", "64", "--gen-steps", "2", "--models-dir", str(root),
                           "-o", str(tmp_path / "out"), "-q"], capture_output=True, text=True, timeout=600)
    # the triplet's layers were generated; without torch-fidelity the Inception features are named, not faked
    assert proc.returncode == 2, proc.stderr
    assert "FID and KID need Inception's features" in proc.stderr and "pip install torch-fidelity" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "layeringdiff", "evaluate", "--table", "1", "-o", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "needs --prompts FILE, --reference-fg DIR and --reference-scene DIR" in proc.stderr
