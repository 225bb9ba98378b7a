"""Where the tiny-model tests run their models: the CPU in fp32 unless the environment asks for a GPU.

    LAYERINGDIFF_TEST_DEVICE=cuda LAYERINGDIFF_TEST_DTYPE=bf16 .venv/bin/python -m pytest tests/models

runs the same suite on CUDA in bf16 (benchmarks/gpu_checks.sh does that for fp16 and bf16)."""

import os

from layeringdiff.models import ModelConfig

DEVICE = os.environ.get("LAYERINGDIFF_TEST_DEVICE", "cpu")
DTYPE = os.environ.get("LAYERINGDIFF_TEST_DTYPE", "fp32")


def model_config(**settings) -> ModelConfig:
    """A ModelConfig on the test device and dtype; `settings` are the other fields."""
    return ModelConfig(device=DEVICE, dtype=DTYPE, **settings)


def server_args() -> tuple[str, ...]:
    """The same choice as `layeringdiff serve` arguments."""
    return ("--device", DEVICE, "--dtype", DTYPE)
