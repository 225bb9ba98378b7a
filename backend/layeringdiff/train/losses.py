"""Training losses of the layering stage (paper, Sec. 3.4): FAN uses MSE against the true foreground; BAN uses
Eq. 2, L_BAN = MSE(B, B_gt) + 0.2 L_H(B, B^), with B^ the FBDD's decoded background (BAN's own input): the
high-frequency term keeps the FBDD's texture where the background is hidden. L_H is Eq. 3 on Haar wavelet
detail bands at scales 0, 1, 2 (directions H, V, D)."""

from typing import Any

BAN_HF_WEIGHT = 0.2
HF_SCALES = (0, 1, 2)


def haar_dwt(x: Any) -> tuple[Any, Any, Any, Any]:
    """One level of the orthonormal 2-D Haar transform of (N, C, H, W), H and W even -> (LL, H, V, D).

    With a, b / c, d the top / bottom pixels of each 2x2 block: LL = (a+b+c+d)/2, H = (a+b-c-d)/2
    (horizontal edges), V = (a-b+c-d)/2 (vertical edges), D = (a-b-c+d)/2 (diagonal).
    """
    a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    c, d = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    return (a + b + c + d) / 2, (a + b - c - d) / 2, (a - b + c - d) / 2, (a - b - c + d) / 2


def high_frequency_loss(pred: Any, target: Any, scales: tuple[int, ...] = HF_SCALES) -> Any:
    """L_H: for each scale s and direction in (H, V, D), the squared differences of the detail bands summed
    and divided by the band's pixel count at that scale; summed over scales and directions, averaged
    over the batch. Image sides must be divisible by 2 ** (max(scales) + 1).

    N_s is read as Eq. 3's text defines it, "the number of pixels in scale s": the band's H_s x W_s, so a pixel's
    three colour channels are summed, while L_MSE (Eq. 2's other term, the usual mean) averages over every value,
    channels included. Per value, L_H thus weighs 3x (for RGB) what a "number of values" reading would, i.e. that
    reading is this one with lambda = 0.2 / 3. We follow the paper's words, as nothing in it says otherwise."""
    total = 0.0
    x, y = pred, target
    for s in range(max(scales) + 1):
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            raise ValueError(f"image sides must be divisible by {2 ** (max(scales) + 1)} for L_H")
        low_x, *bands_x = haar_dwt(x)
        low_y, *bands_y = haar_dwt(y)
        if s in scales:
            pixels = bands_x[0].shape[-2] * bands_x[0].shape[-1]
            for bx, by in zip(bands_x, bands_y, strict=True):
                total = total + ((bx - by) ** 2).flatten(1).sum(1).mean() / pixels
        x, y = low_x, low_y
    return total


def fan_loss(pred: Any, target: Any) -> Any:
    return ((pred - target) ** 2).mean()


def ban_loss(pred: Any, target: Any, decoded: Any) -> Any:
    """Eq. 2: pixel MSE against the true background, high frequencies against the FBDD's decoded one."""
    return ((pred - target) ** 2).mean() + BAN_HF_WEIGHT * high_frequency_loss(pred, decoded)
