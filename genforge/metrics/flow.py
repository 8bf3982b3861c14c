"""Classical optical flow (OpenCV's DIS), backward warping, and what is built on them: the flicker
figure of video super-resolution and the DIS-flow frame-interpolation baseline.

Conventions: images are H x W x C numpy arrays (uint8 RGB unless said otherwise); a flow is
H x W x 2 float32 holding (dx, dy) per pixel, and the flow from a to b satisfies a(p) ≈ b(p + flow(p)),
so `backward_warp(b, flow)` reconstructs a.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import cv2
import numpy as np

_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
            "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
_DIS: dict[str, cv2.DISOpticalFlow] = {}


def _grey(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"dis_flow needs uint8 images, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] >= 3:
        return cv2.cvtColor(np.ascontiguousarray(image[:, :, :3]), cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(image.reshape(image.shape[:2]))


def dis_flow(a: np.ndarray, b: np.ndarray, preset: str = "medium") -> np.ndarray:
    """Dense flow from a to b (H x W x 2 float32, a(p) ≈ b(p + flow(p))), DIS on the BT.601 grey images."""
    if a.shape[:2] != b.shape[:2]:
        raise ValueError(f"dis_flow needs images of one size, got {a.shape[:2]} and {b.shape[:2]}")
    if preset not in _DIS:
        if preset not in _PRESETS:
            raise ValueError(f"unknown DIS preset {preset!r} (known: {', '.join(_PRESETS)})")
        _DIS[preset] = cv2.DISOpticalFlow_create(_PRESETS[preset])
    return _DIS[preset].calc(_grey(a), _grey(b), None).astype(np.float32, copy=False)


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return xs, ys


def backward_warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """image sampled at p + flow(p): bilinear, borders replicated; uint8 or float32, H x W [x C], same shape out."""
    h, w = flow.shape[:2]
    xs, ys = _grid(h, w)
    src = np.ascontiguousarray(image)
    channels = src.shape[2] if src.ndim == 3 else 0
    if channels > 4:  # cv2.remap takes at most 4 channels
        return np.concatenate([backward_warp(src[:, :, i:i + 4], flow) for i in range(0, channels, 4)], axis=2)
    out = cv2.remap(src, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(src.shape)


def flow_consistency(f_ab: np.ndarray, f_ba: np.ndarray) -> np.ndarray:
    """Per-pixel weight in [0, 1] from the forward-backward check (Sundaram et al. 2010): a pixel whose
    flow, followed forward then back, returns to where it started is visible in both frames (-> 1); an
    occluded one does not (-> 0). Soft: exp(-|f_ab + f_ba(p + f_ab)|² / (0.01 (|f_ab|² + |f_ba|²) + 0.5)).
    Pixels whose flow leaves the frame get 0."""
    back = backward_warp(f_ba, f_ab)
    err = np.sum((f_ab + back) ** 2, axis=2)
    tolerance = 0.01 * (np.sum(f_ab**2, axis=2) + np.sum(back**2, axis=2)) + 0.5
    weight = np.exp(-err / tolerance)
    h, w = f_ab.shape[:2]
    xs, ys = _grid(h, w)
    tx, ty = xs + f_ab[..., 0], ys + f_ab[..., 1]
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    return np.where(inside, weight, 0.0).astype(np.float32)


def intermediate_flows(a: np.ndarray, b: np.ndarray, t: float, preset: str = "medium"):
    """(F_t0, F_t1, F_01, F_10): DIS flows both ways and, from them, the flows from the frame at t
    back to a and to b under linear motion, as Super SloMo approximates them (Jiang et al. 2018):
    F_t0 = -(1-t) t F_01 + t² F_10, F_t1 = (1-t)² F_01 - t(1-t) F_10. VFINet starts from these."""
    f01, f10 = dis_flow(a, b, preset), dis_flow(b, a, preset)
    ft0 = -(1 - t) * t * f01 + t * t * f10
    ft1 = (1 - t) ** 2 * f01 - t * (1 - t) * f10
    return ft0, ft1, f01, f10


def dis_interpolate(a: np.ndarray, b: np.ndarray, t: float = 0.5, *, preset: str = "medium") -> np.ndarray:
    """The classical interpolation baseline: the frame at time t in [0, 1] between uint8 RGB frames a, b.

    DIS flows both ways and the intermediate flows of `intermediate_flows`. Both frames
    are backward-warped to t and blended with weights (1-t) V0 and t V1, where V0, V1 are the forward-
    backward consistency of each frame's flow, carried to the intermediate positions (occluded -> low).
    Where both visibilities vanish the plain (1-t, t) blend is used. t = 0 gives a, t = 1 gives b exactly."""
    if not 0 <= t <= 1:
        raise ValueError(f"t must be in [0, 1], got {t}")
    if a.shape != b.shape:
        raise ValueError(f"frames differ in shape: {a.shape} and {b.shape}")
    if t == 0:
        return a.copy()
    if t == 1:
        return b.copy()
    ft0, ft1, f01, f10 = intermediate_flows(a, b, t, preset)
    i0 = backward_warp(a.astype(np.float32), ft0)
    i1 = backward_warp(b.astype(np.float32), ft1)
    v0 = backward_warp(flow_consistency(f01, f10), ft0)
    v1 = backward_warp(flow_consistency(f10, f01), ft1)
    w0, w1 = (1 - t) * v0, t * v1
    total = w0 + w1
    plain = total < 1e-3
    w0, w1 = np.where(plain, 1 - t, w0 / np.maximum(total, 1e-3)), np.where(plain, t, w1 / np.maximum(total, 1e-3))
    if i0.ndim == 3:
        w0, w1 = w0[..., None], w1[..., None]
    return np.clip(np.rint(w0 * i0 + w1 * i1), 0, 255).astype(np.uint8)


def _upscale_flow(flow: np.ndarray, h: int, w: int) -> np.ndarray:
    """A flow resized to h x w, its vectors scaled with it."""
    fh, fw = flow.shape[:2]
    if (fh, fw) == (h, w):
        return flow
    up = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)
    up[..., 0] *= w / fw
    up[..., 1] *= h / fh
    return up


def flicker(frames_out: Iterable[np.ndarray], frames_in: Iterable[np.ndarray], *, preset: str = "medium",
            threshold: float = 0.5) -> float:
    """Temporal inconsistency of a processed video (e.g. super-resolved) against its input, in 8-bit levels.

    For each pair of consecutive output frames (o_k, o_k+1): the flow i_k -> i_k+1 is computed on the
    INPUT frames (so the output's own artefacts do not steer it), resized to the output size with its
    vectors scaled, and o_k+1 is warped back onto o_k; the figure is the mean absolute difference over
    the pixels that pass the forward-backward check on the input flow (weight > threshold: occlusions and
    pixels leaving the frame do not count), averaged over pairs. Content that a network makes up
    differently in each frame raises it; a perfectly stable output of a static input gives 0. Lower is
    less flicker. Streams: only the previous pair of frames is kept. nan for fewer than two frames."""
    total, pairs = 0.0, 0
    prev_out = prev_in = None
    for out, inp in zip(frames_out, frames_in):
        if prev_out is not None:
            fwd, bwd = dis_flow(prev_in, inp, preset), dis_flow(inp, prev_in, preset)
            h, w = out.shape[:2]
            flow = _upscale_flow(fwd, h, w)
            mask = cv2.resize(flow_consistency(fwd, bwd), (w, h), interpolation=cv2.INTER_NEAREST) > threshold
            warped = backward_warp(out.astype(np.float32), flow)
            diff = np.abs(prev_out.astype(np.float32) - warped)
            diff = diff.mean(axis=2) if diff.ndim == 3 else diff
            if mask.any():
                total += float(diff[mask].mean())
                pairs += 1
        prev_out, prev_in = out, inp
    return total / pairs if pairs else math.nan
