"""Faces in ordinary photos: detection, UTKFace-style alignment, and annotated previews.

Detection is MTCNN with the weights bundled in the `mtcnn` package (MIT licence, no download at
run time). The package runs its three networks eagerly, one call per pyramid level and stage
(about 140 ms of CPU for a 640x480 photo here); `MTCNNDetector` runs the same networks and
weights as one compiled TensorFlow graph with a correct image pyramid, on photos capped at
`DETECT_MAX_SIDE`: about 30 ms of CPU for the same photo, with the same recall (see
benchmarks/faces.md for the measurements and why MTCNN was chosen).

Alignment maps the five MTCNN landmarks onto the positions they take in UTKFace's "aligned &
cropped" 200x200 images (measured on the dataset, see `UTKFACE_TEMPLATE`) with a similarity
transform: eyes level, same scale and margin, so the models see at inference what they saw in
training.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .images import load_image

# Photos are downscaled so that their longer side is at most this many pixels for detection;
# boxes and landmarks are mapped back to the original, and crops are cut from the original.
DETECT_MAX_SIDE = 640
# The smallest face searched for, in pixels of the (downscaled) detection image. Smaller faces
# carry too little detail for an age estimate, and each halving of this size doubles the work.
MIN_FACE = 24
# At most this many faces per photo are returned: the largest ones, ordered left to right.
MAX_FACES = 32
# MTCNN's three confidence thresholds (proposal, refinement, output network).
THRESHOLDS = (0.6, 0.7, 0.8)
# Side of the aligned crop, the size of UTKFace's aligned & cropped images.
CROP_SIZE = 200
LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
# Where MTCNN finds the five landmarks in UTKFace's aligned & cropped 200x200 images: the mean
# over 116 images of the dataset (`python benchmarks/faces.py --utkface ARCHIVE` measures it;
# it found no face in 4 of 120). The eyes are level (their angle varies by 1.9 degrees) and 80
# pixels apart; the faces fill the frame. "left" and "right" are as seen in the image, so
# `left_eye` is the person's right eye.
UTKFACE_TEMPLATE = {
    "left_eye": (58.9, 58.8),
    "right_eye": (138.5, 59.1),
    "nose": (99.3, 103.3),
    "mouth_left": (62.7, 138.9),
    "mouth_right": (132.9, 139.1),
}


@dataclass(frozen=True)
class Detection:
    """One face found in a photo, in the photo's own pixel coordinates (continuous, x right, y down)."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    landmarks: dict[str, tuple[float, float]]  # the five LANDMARKS
    score: float  # the output network's face probability

    @property
    def size(self) -> float:
        """The box's geometric mean side, in pixels."""
        return math.sqrt(max(self.box[2] - self.box[0], 0) * max(self.box[3] - self.box[1], 0))


# ----- the detector ------------------------------------------------------------------------------
def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression: indices of the boxes kept, best score first."""
    x0, y0, x1, y1 = boxes.T
    areas = np.maximum(x1 - x0, 0) * np.maximum(y1 - y0, 0)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]))
        h = np.maximum(0.0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]))
        inter = w * h
        denom = np.minimum(areas[i], areas[rest]) if mode == "min" else areas[i] + areas[rest] - inter
        order = rest[inter <= threshold * np.maximum(denom, 1e-9)]
    return np.asarray(keep, dtype=int)


def _build_graph(pnet, rnet, onet, scale_factor: float, max_proposals: int = 2000):
    """MTCNN's three stages as one TensorFlow graph: uint8 image in, boxes, scores and landmarks out.

    One graph instead of some twenty eager calls (a pyramid level each, then two patch
    networks) is what makes detection cheap: the networks are small, and per-call overhead
    dominated the `mtcnn` package's own run time.
    """
    import tensorflow as tf

    def nms(boxes, scores, threshold):
        """Indices kept by non-maximum suppression at an IoU threshold."""
        yx = tf.gather(boxes, [1, 0, 3, 2], axis=1)  # tf.image wants y0, x0, y1, x1
        return tf.image.non_max_suppression(yx, scores, max_proposals, iou_threshold=threshold)

    def square(boxes):
        """Boxes grown to squares around their centres, as the next network expects."""
        wh = boxes[:, 2:] - boxes[:, :2]
        centre = boxes[:, :2] + wh / 2
        half = tf.reduce_max(wh, axis=1, keepdims=True) / 2
        return tf.concat([centre - half, centre + half], axis=1)

    def regress(boxes, offsets):
        """Boxes moved by a network's regression offsets (in units of the box's width and height)."""
        wh = boxes[:, 2:] - boxes[:, :2]
        return boxes + offsets * tf.concat([wh, wh], axis=1)

    def run(net, image, boxes, side):
        """A patch network on the boxes' side x side patches (a dummy patch first: empty batches break conv)."""
        outputs = net(patches(image, tf.concat([tf.constant([[0.0, 0.0, 12.0, 12.0]]), boxes], axis=0), side))
        return [out[1:] for out in outputs]

    def patches(image, boxes, side):
        """Square pixel boxes resampled to side x side, samples at the box's pixel centres."""
        hw = tf.cast(tf.shape(image)[:2], tf.float32)
        half = (boxes[:, 2:] - boxes[:, :2]) / (2 * side)
        start = (boxes[:, :2] + half - 0.5)[:, ::-1] / tf.maximum(hw - 1, 1)
        end = (boxes[:, 2:] - half - 0.5)[:, ::-1] / tf.maximum(hw - 1, 1)
        index = tf.zeros(tf.shape(boxes)[:1], tf.int32)
        return tf.image.crop_and_resize(image[None], tf.concat([start, end], axis=1), index, [side, side])

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8), tf.TensorSpec([], tf.float32),
                                  tf.TensorSpec([3], tf.float32)])
    def detect(image_u8, min_face, thresholds):
        """Boxes (N, 4), face probabilities (N,) and five landmarks (N, 5, 2) in the image's pixels."""
        image = (tf.cast(image_u8, tf.float32) - 127.5) * 0.0078125
        hw = tf.cast(tf.shape(image)[:2], tf.float32)
        # Stage 1: the proposal network over an image pyramid, from faces of min_face pixels up.
        found = tf.TensorArray(tf.float32, size=0, dynamic_size=True, infer_shape=False, element_shape=[None, 9])
        scale = 12.0 / min_face
        level = 0
        while tf.reduce_min(hw) * scale >= 12.0:
            size = tf.cast(tf.math.ceil(hw * scale), tf.int32)
            reg, prob = pnet(tf.image.resize(image[None], size, method="area"))
            prob = prob[0, :, :, 1]
            cells = tf.where(prob > thresholds[0])
            score = tf.gather_nd(prob, cells)
            yx = tf.cast(cells, tf.float32) * 2
            step = (hw / tf.cast(size, tf.float32))[::-1]  # photo pixels per pyramid pixel, x then y
            xy = yx[:, ::-1]
            boxes = tf.concat([xy * step, (xy + 12) * step], axis=1)
            keep = nms(boxes, score, 0.5)
            row = tf.concat([tf.gather(boxes, keep), tf.gather(tf.gather_nd(reg[0], cells), keep),
                             tf.gather(score, keep)[:, None]], axis=1)
            found = found.write(level, row)
            level += 1
            scale *= scale_factor
        rows = found.concat() if level > 0 else tf.zeros([0, 9])
        rows = tf.gather(rows, nms(rows[:, :4], rows[:, 8], 0.7))
        boxes = square(regress(rows[:, :4], rows[:, 4:8]))
        # Stage 2: the refinement network on 24x24 patches.
        reg, prob = run(rnet, image, boxes, 24)
        keep = tf.where(prob[:, 1] > thresholds[1])[:, 0]
        boxes, score = regress(tf.gather(boxes, keep), tf.gather(reg, keep)), tf.gather(prob[:, 1], keep)
        boxes = square(tf.gather(boxes, nms(boxes, score, 0.7)))
        # Stage 3: the output network on 48x48 patches, with five landmarks.
        reg, marks, prob = run(onet, image, boxes, 48)
        keep = tf.where(prob[:, 1] > thresholds[2])[:, 0]
        boxes, reg, marks, score = (tf.gather(t, keep) for t in (boxes, reg, marks, prob[:, 1]))
        side = boxes[:, 2:3] - boxes[:, 0:1]
        points = tf.stack([boxes[:, 0:1] + side * marks[:, 0:5], boxes[:, 1:2] + side * marks[:, 5:10]], axis=2)
        return regress(boxes, reg), score, points

    return detect


class MTCNNDetector:
    """MTCNN with the `mtcnn` package's bundled weights, run as one compiled TensorFlow graph."""

    def __init__(self, min_face: int = MIN_FACE, thresholds: tuple[float, float, float] = THRESHOLDS,
                 max_side: int = DETECT_MAX_SIDE, scale_factor: float = 0.709):
        from mtcnn.network.onet import ONet
        from mtcnn.network.pnet import PNet
        from mtcnn.network.rnet import RNet
        from mtcnn.utils.tensorflow import load_weights

        self.min_face, self.thresholds, self.max_side = min_face, thresholds, max_side
        nets = []
        for cls, weights in ((PNet, "pnet.lz4"), (RNet, "rnet.lz4"), (ONet, "onet.lz4")):
            net = cls()
            net.build()
            net.set_weights(load_weights(weights))
            nets.append(net)
        self._graph = _build_graph(*nets, scale_factor=scale_factor)

    def warm_up(self) -> None:
        """Trace the graph now, on the shape of a 4:3 photo, so that the first photo is as fast as the next."""
        self.detect_array(np.zeros((self.max_side * 3 // 4, self.max_side, 3), np.uint8))

    def detect_array(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes (N, 4), scores (N,) and landmarks (N, 5, 2) in an HxWx3 uint8 image's pixels."""
        if min(rgb.shape[:2]) < 12:  # smaller than the proposal network's window
            return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))
        boxes, scores, points = (t.numpy().astype(np.float64) for t in self._graph(
            np.ascontiguousarray(rgb, dtype=np.uint8), np.float32(self.min_face),
            np.asarray(self.thresholds, np.float32)))
        keep = _nms(boxes, scores, 0.7, mode="min")  # drop boxes nested in a better one
        return boxes[keep], scores[keep], points[keep]

    def detect(self, image: Image.Image, max_faces: int | None = MAX_FACES) -> list[Detection]:
        """Faces in an RGB photo, capped and ordered by `cap_faces`.

        Photos larger than `max_side` are downscaled for detection, and the boxes and landmarks
        mapped back to the photo's own pixels.
        """
        w, h = image.size
        factor = min(1.0, self.max_side / max(w, h))
        small = image
        if factor < 1.0:
            size = (max(1, round(w * factor)), max(1, round(h * factor)))
            small = image.resize(size, Image.BILINEAR, reducing_gap=2.0)
        boxes, scores, points = self.detect_array(np.asarray(small.convert("RGB")))
        fx, fy = w / small.size[0], h / small.size[1]
        boxes = boxes * np.array([fx, fy, fx, fy])
        points = points * np.array([fx, fy])
        dets = [Detection(box=tuple(float(v) for v in b),
                          landmarks={k: (float(p[0]), float(p[1])) for k, p in zip(LANDMARKS, pts)},
                          score=float(s))
                for b, s, pts in zip(boxes, scores, points)]
        return cap_faces(dets, max_faces)


def cap_faces(detections: list[Detection], max_faces: int | None = MAX_FACES) -> list[Detection]:
    """The `max_faces` largest detections (all when None), ordered left to right."""
    if max_faces is not None:
        detections = sorted(detections, key=lambda d: -d.size)[:max(max_faces, 0)]
    return sorted(detections, key=lambda d: (d.box[0], d.box[1]))


_DETECTOR: MTCNNDetector | None = None
_DETECTOR_LOCK = threading.Lock()


def get_detector() -> MTCNNDetector:
    """The process-wide detector, built (and its graphs traced) on first use."""
    global _DETECTOR
    with _DETECTOR_LOCK:
        if _DETECTOR is None:
            detector = MTCNNDetector()
            detector.warm_up()
            _DETECTOR = detector
        return _DETECTOR


def detect_faces(image: Any, max_faces: int | None = MAX_FACES) -> list[Detection]:
    """Faces in a photo (anything `load_image` accepts, EXIF orientation applied): the largest
    `max_faces` (all when None), left to right."""
    return get_detector().detect(load_image(image), max_faces=max_faces)


# ----- alignment ---------------------------------------------------------------------------------
def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 least-squares similarity (rotation, uniform scale, shift; no reflection) taking src to dst."""
    src, dst = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    zs = (src - mu_s) @ np.array([1, 1j])
    zd = (dst - mu_d) @ np.array([1, 1j])
    a = np.vdot(zs, zd) / max(np.vdot(zs, zs).real, 1e-12)  # complex: scale * e^(i angle)
    m = np.array([[a.real, -a.imag], [a.imag, a.real]])
    return np.hstack([m, (mu_d - m @ mu_s)[:, None]])


def alignment_matrix(detection: Detection, size: int = CROP_SIZE) -> np.ndarray:
    """The 2x3 similarity taking photo pixels to a `size` x `size` UTKFace-framed crop."""
    src = np.array([detection.landmarks[k] for k in LANDMARKS])
    dst = np.array([UTKFACE_TEMPLATE[k] for k in LANDMARKS]) * (size / CROP_SIZE)
    return similarity_transform(src, dst)


def align_face(image: Image.Image, detection: Detection, size: int = CROP_SIZE) -> Image.Image:
    """The face cut from the full-resolution photo, framed like UTKFace's aligned & cropped images.

    Areas outside the photo are black, as in UTKFace. A face much larger than the crop is first
    shrunk with a box filter, so the result is not aliased.
    """
    forward = alignment_matrix(detection, size)
    scale = math.hypot(forward[0, 0], forward[1, 0])  # crop pixels per photo pixel
    inverse = np.linalg.inv(np.vstack([forward, [0, 0, 1]]))[:2]
    source, offset, step = image, np.zeros(2), 1
    if scale < 0.5:
        # Cut the region the crop covers (plus a margin), and shrink it by a whole factor first.
        corners = inverse @ np.array([[0, size, 0, size], [0, 0, size, size], [1, 1, 1, 1]])
        x0, y0 = np.floor(corners.min(axis=1)) - 2
        x1, y1 = np.ceil(corners.max(axis=1)) + 2
        step = int(1 / scale)
        box = (int(x0), int(y0), int(x0) + step * math.ceil((x1 - x0) / step), int(y0) + step * math.ceil((y1 - y0) / step))
        source = image.crop(box).reduce(step)
        offset = np.array([x0, y0])
    # crop pixel -> photo pixel (inverse), then photo pixel -> source pixel: (p - offset) / step
    to_source = np.hstack([inverse[:, :2], (inverse[:, 2] - offset)[:, None]]) / step
    coeffs = tuple(float(v) for v in to_source.ravel())
    if source.mode != "RGB":
        source = source.convert("RGB")
    return source.transform((size, size), Image.AFFINE, coeffs, resample=Image.BILINEAR, fillcolor=(0, 0, 0))


def map_points(matrix: np.ndarray, points: Mapping[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """Points moved by a 2x3 affine matrix (for example landmarks into the aligned crop)."""
    return {k: tuple(float(v) for v in matrix @ np.array([x, y, 1.0])) for k, (x, y) in points.items()}


# ----- annotation --------------------------------------------------------------------------------
def _label(predictions: Mapping[str, Mapping], model_name: str | None) -> list[str]:
    """Text lines "age, gender" for one face (prefixed by the model's name when several are shown)."""
    names = [model_name] if model_name is not None else list(predictions)
    lines = []
    for name in names:
        p = predictions.get(name)
        if p:
            text = f"{p['age']:.0f}, {p['gender']}"
            lines.append(f"{name}: {text}" if len(names) > 1 else text)
    return lines


def annotate(image: Image.Image, faces: Iterable[Any], model_name: str | None = None) -> Image.Image:
    """A copy of the photo with each face's box, landmarks and an "age, gender" label.

    `faces` are `Detection`s or objects with `box` and `predictions` (such as estimator.Face);
    `model_name` picks whose predictions to write, and None writes every model's.
    """
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    side = max(out.size)
    width = max(2, round(side / 300))
    font = ImageFont.load_default(size=max(12, round(side / 40)))
    colours = [(255, 64, 64), (64, 160, 255), (64, 220, 64), (255, 190, 0), (220, 64, 255)]
    for i, face in enumerate(faces):
        colour = colours[i % len(colours)]
        x0, y0, x1, y1 = face.box
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=width)
        for x, y in getattr(face, "landmarks", {}).values():
            draw.ellipse((x - width, y - width, x + width, y + width), fill=colour)
        lines = _label(getattr(face, "predictions", {}) or {}, model_name) or [f"face {getattr(face, 'score', 0):.2f}"]
        text = "\n".join(lines)
        left, top, right, bottom = draw.multiline_textbbox((0, 0), text, font=font)
        th, tw = bottom - top + 2 * width, right - left + 2 * width
        ty = y0 - th if y0 - th >= 0 else y1  # above the box, or below it at the top edge
        draw.rectangle((x0, ty, x0 + tw, ty + th), fill=colour)
        draw.multiline_text((x0 + width - left, ty + width - top), text, fill=(255, 255, 255), font=font)
    return out
