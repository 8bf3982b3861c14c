"""The checkerboard figure: how much more of an image's energy sits on a regular 2- or 4-pixel grid
than in a reference image of the same scene.

A stride-2 transposed convolution whose kernel overlaps unevenly (kernel 3) gives alternate output
pixels a different number of kernel taps: a fixed pattern of period 2 in each direction, and two of
them stacked give period 4 (Odena et al. 2016). Such a pattern is a few sharp peaks in the Fourier
spectrum, at the frequencies whose both components are multiples of 1/4 cycle per pixel; natural
images spread their energy smoothly (roughly as 1/f) and hold little there.

Definitions, for an image x (H x W x C, any range; H and W are cropped down to multiples of 4):

* spectrum: each channel minus its mean, times a 2-D Hann window (so the image borders do not leak
  into the axes of the spectrum), FFT, squared magnitude, averaged over channels: P(u, v);
* grid frequencies of period 2: (u, v) in {0, H/2} x {0, W/2} without (0, 0) - the 1-pixel
  alternation along rows, columns and diagonals; of period 4: (u, v) in {0, +-H/4, H/2} x
  {0, +-W/4, W/2} with at least one component +-H/4 or +-W/4;
* grid energy E_p(x): the power in the 3x3 bins around each grid frequency of period p (the Hann
  window's main lobe), as a fraction of the total power outside the 3x3 bins around DC;
* checkerboard(output, reference) = (E_2(output) + E_4(output)) / (E_2(reference) + E_4(reference)).

So 1 means "as much grid energy as the reference" (the ground truth in `genforge eval`, or the input
where that is the comparable image), above 1 a grid the reference does not have; a visible
checkerboard is typically 3 and more. The ratio of fractions does not depend on contrast or
brightness, only on where the energy sits.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["PERIODS", "checkerboard", "grid_energy"]

PERIODS = (2, 4)


def _as_hwc(image) -> np.ndarray:
    """H x W, H x W x C (numpy) or C x H x W / 1 x C x H x W (torch) -> float64 H x W x C."""
    if torch.is_tensor(image):
        x = image.detach().cpu().double()
        if x.ndim == 4:
            if x.shape[0] != 1:
                raise ValueError(f"one image at a time, got a batch of {x.shape[0]}")
            x = x[0]
        array = x.permute(1, 2, 0).numpy() if x.ndim == 3 else x.numpy()
    else:
        array = np.asarray(image, dtype=np.float64)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise ValueError(f"expected an image, got shape {array.shape}")
    return array


def _grid_bins(h: int, w: int, period: int) -> set[tuple[int, int]]:
    rows = {0, h // 2} if period == 2 else {0, h // 4, h - h // 4, h // 2}
    cols = {0, w // 2} if period == 2 else {0, w // 4, w - w // 4, w // 2}
    quarter = ({h // 4, h - h // 4}, {w // 4, w - w // 4})
    return {(u, v) for u in rows for v in cols
            if (u, v) != (0, 0) and (period == 2 or u in quarter[0] or v in quarter[1])}


def _around(bins, h: int, w: int) -> set[tuple[int, int]]:
    return {((u + du) % h, (v + dv) % w) for u, v in bins for du in (-1, 0, 1) for dv in (-1, 0, 1)}


def grid_energy(image) -> dict[int, float]:
    """{2: E_2, 4: E_4}: the fraction of the image's (non-DC) spectral power on the period-2 and
    period-4 grid frequencies (see the module docstring). An image smaller than 8x8 has no
    meaningful spectrum and gives ValueError."""
    x = _as_hwc(image)
    h, w = x.shape[0] - x.shape[0] % 4, x.shape[1] - x.shape[1] % 4
    if h < 8 or w < 8:
        raise ValueError(f"the checkerboard figure needs an image of at least 8x8, got {x.shape[1]}x{x.shape[0]}")
    x = x[:h, :w]
    x = x - x.mean(axis=(0, 1), keepdims=True)
    window = np.outer(np.hanning(h), np.hanning(w))[:, :, None]
    power = (np.abs(np.fft.fft2(x * window, axes=(0, 1))) ** 2).mean(axis=2)
    dc = _around({(0, 0)}, h, w)
    total = power.sum() - sum(power[b] for b in dc)
    if total <= 0:  # a flat image has no grid, and nothing else either
        return {p: 0.0 for p in PERIODS}
    taken: set[tuple[int, int]] = set(dc)
    out = {}
    for p in PERIODS:
        bins = _around(_grid_bins(h, w, p), h, w) - taken  # a bin is counted once, for the shorter period
        taken |= bins
        out[p] = float(sum(power[b] for b in bins) / total)
    return out


def checkerboard(output, reference, *, floor: float = 1e-6) -> float:
    """(E_2 + E_4)(output) / (E_2 + E_4)(reference): 1 = the reference's grid energy, above 1 a
    regular 2- or 4-pixel grid the reference does not have. `floor` bounds the denominator (a
    reference with no energy there at all, e.g. a flat poster)."""
    out, ref = grid_energy(output), grid_energy(reference)
    return float(sum(out.values()) / max(sum(ref.values()), floor))
