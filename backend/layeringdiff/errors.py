"""Exceptions the pipeline raises on purpose; the server maps them to protocol error codes."""


class InputError(ValueError):
    """The request is well formed but cannot be worked on (empty mask, size mismatch, NaN, ...)."""

    def __init__(self, text: str, detail: str = "") -> None:
        super().__init__(text)
        self.text = text
        self.detail = detail


class NotAvailable(RuntimeError):
    """A feature needs models or stages that are not present on this backend."""

    def __init__(self, text: str, detail: str = "") -> None:
        super().__init__(text)
        self.text = text
        self.detail = detail


class JobCancelled(Exception):
    """Raised from a progress callback when the user cancelled; stages never catch it."""


ML_MODULES = ("torch", "torchvision", "diffusers", "transformers", "accelerate", "safetensors", "huggingface_hub")
ML_HINT = "install torch (the build for your GPU), then pip install 'layeringdiff[ml]'"


def missing_ml_module(exc: ModuleNotFoundError) -> str | None:
    """The ml extra's package that an import failed on (a base install reached a model path), else None."""
    module = (exc.name or "").split(".")[0]
    return module if module in ML_MODULES else None
