"""Face detection, UTKFace-style alignment and annotation on public-domain photos and composites."""

from __future__ import annotations

import io
import json
import math
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agegender.estimator import Face
from agegender.faces import (
    CROP_SIZE,
    LANDMARKS,
    MAX_FACES,
    UTKFACE_TEMPLATE,
    Detection,
    align_face,
    alignment_matrix,
    annotate,
    detect_faces,
    map_points,
    similarity_transform,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "agegender" / "examples"
UTKFACE = ROOT.parent / "shared" / "data" / "UTKFace.tar.gz"
# Hand-checked face centres in the two example portraits.
CENTRES = {"astronaut.jpg": (225, 117), "grace_hopper.jpg": (266, 227)}


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.open(EXAMPLES / "astronaut.jpg").convert("RGB")


def only_face(image) -> Detection:
    """The one face of a single-face photo (fails when there is not exactly one)."""
    faces = detect_faces(image)
    assert len(faces) == 1, f"expected one face, found {len(faces)}"
    return faces[0]


def crop_difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute pixel difference of two crops, ignoring a 20% border (backgrounds differ)."""
    m = a.width // 5
    x = np.asarray(a, np.float32)[m:-m, m:-m]
    y = np.asarray(b, np.float32)[m:-m, m:-m]
    return float(np.abs(x - y).mean())


def eye_angle(points) -> float:
    """Angle of the line from left to right eye, in degrees (0 = level)."""
    (x0, y0), (x1, y1) = points["left_eye"], points["right_eye"]
    return math.degrees(math.atan2(y1 - y0, x1 - x0))


# ----- detection ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CENTRES))
def test_one_face_in_each_example_portrait(name):
    face = only_face(EXAMPLES / name)
    x0, y0, x1, y1 = face.box
    cx, cy = CENTRES[name]
    assert x0 < cx < x1 and y0 < cy < y1 and face.score > 0.9
    lm = face.landmarks
    assert set(lm) == set(LANDMARKS)
    assert lm["left_eye"][0] < lm["nose"][0] < lm["right_eye"][0]
    assert max(lm["left_eye"][1], lm["right_eye"][1]) < lm["nose"][1] < min(lm["mouth_left"][1], lm["mouth_right"][1])
    assert all(x0 <= x <= x1 and y0 <= y <= y1 for x, y in lm.values())


def test_all_faces_of_the_composite_are_found_where_they_are():
    truth = json.loads((EXAMPLES / "five_faces.json").read_text())["faces"]
    faces = detect_faces(EXAMPLES / "five_faces.jpg")
    assert len(faces) == len(truth) == 5
    for tx0, ty0, tx1, ty1 in truth:
        hits = [f for f in faces if tx0 <= (f.box[0] + f.box[2]) / 2 <= tx1 and ty0 <= (f.box[1] + f.box[3]) / 2 <= ty1]
        assert len(hits) == 1
        size = math.sqrt((tx1 - tx0) * (ty1 - ty0))
        assert 0.7 < hits[0].size / size < 1.4
    assert [f.box[0] for f in faces] == sorted(f.box[0] for f in faces)  # left to right


@pytest.mark.parametrize("image", [Image.new("RGB", (640, 480), (128, 128, 128)),
                                   Image.fromarray(np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)),
                                   Image.new("RGB", (5, 5)), Image.new("RGB", (1, 1))],
                         ids=["grey", "noise", "5x5", "1x1"])
def test_no_face_gives_an_empty_list(image):
    assert detect_faces(image) == []


def test_dozens_of_faces_are_capped_to_the_largest(astronaut):
    faces = [astronaut.crop((161, 38, 289, 196)),
             Image.open(EXAMPLES / "grace_hopper.jpg").convert("RGB").crop((150, 90, 380, 370))]
    canvas = Image.new("RGB", (1200, 840), (120, 130, 140))
    sizes = {}
    for i in range(48):  # 6 rows of 8 faces, 60 to 81 pixels wide
        row, col = divmod(i, 8)
        face = faces[(row + col) % 2]
        w = 60 + 3 * (i % 8)
        canvas.paste(face.resize((w, round(w * face.height / face.width))), (col * 150 + 20, row * 140 + 10))
        sizes[i] = w
    found = detect_faces(canvas, max_faces=None)
    assert len(found) == 48
    capped = detect_faces(canvas)
    assert len(capped) == MAX_FACES < 48
    smallest_kept = min(f.size for f in capped)
    assert all(f.size <= smallest_kept + 1e-6 for f in found if f not in capped)
    assert [f.box[0] for f in capped] == sorted(f.box[0] for f in capped)


def test_huge_photo_is_downscaled_for_detection_and_cropped_from_the_original(astronaut):
    small = only_face(astronaut)
    big_photo = astronaut.resize((4096, 4096), Image.BICUBIC)
    big = only_face(big_photo)
    assert np.allclose(np.array(big.box) / 8, small.box, atol=4)
    for k in LANDMARKS:
        assert np.allclose(np.array(big.landmarks[k]) / 8, small.landmarks[k], atol=3)
    big_crop, small_crop = align_face(big_photo, big), align_face(astronaut, small)
    assert big_crop.size == (CROP_SIZE, CROP_SIZE)
    assert crop_difference(big_crop, small_crop) < 10
    # cut from the original: sharper than the same crop taken from the downscaled detection image
    detail = np.abs(np.diff(np.asarray(big_crop.convert("L"), np.float32), axis=1)).mean()
    assert detail > 0.9 * np.abs(np.diff(np.asarray(small_crop.convert("L"), np.float32), axis=1)).mean()


def test_exif_rotated_phone_photo_is_detected_upright(astronaut):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated; "rotate 90 degrees clockwise to display"
    buf = io.BytesIO()
    astronaut.transpose(Image.ROTATE_90).save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    for upload in (buf.getvalue(), Image.open(io.BytesIO(buf.getvalue()))):  # bytes, or a PIL image with EXIF
        face = only_face(upload)
        assert abs(eye_angle(face.landmarks)) < 10
        assert np.allclose(face.box, only_face(astronaut).box, atol=6)


# ----- alignment ---------------------------------------------------------------------------------
def test_similarity_transform_recovers_rotation_scale_and_shift():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, (5, 2))
    a, s, t = math.radians(30), 1.7, np.array([12.0, -5.0])
    rot = s * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    m = similarity_transform(src, src @ rot.T + t)
    assert np.allclose(m[:, :2], rot) and np.allclose(m[:, 2], t)


def test_aligned_crop_puts_the_landmarks_where_utkface_has_them(astronaut):
    crop = align_face(astronaut, only_face(astronaut))
    assert crop.size == (CROP_SIZE, CROP_SIZE) and crop.mode == "RGB"
    # Detect again in the crop (on a black border, so that the whole face is visible).
    canvas = Image.new("RGB", (400, 400))
    canvas.paste(crop, (100, 100))
    again = only_face(canvas)
    error = {k: math.dist((x - 100, y - 100), UTKFACE_TEMPLATE[k]) for k, (x, y) in again.landmarks.items()}
    # The eyes fix the framing; nose and mouth vary from face to face (by 5 to 7 pixels in UTKFace).
    assert error["left_eye"] < 5 and error["right_eye"] < 5, error
    assert max(error.values()) < 12 and np.mean(list(error.values())) < 7, error
    assert abs(eye_angle(again.landmarks)) < 2


@pytest.mark.parametrize("angle", [-25, 15])
def test_alignment_undoes_rotation_and_scale(astronaut, angle):
    upright = align_face(astronaut, only_face(astronaut))
    turned = astronaut.resize((768, 768), Image.BICUBIC).rotate(angle, resample=Image.BICUBIC, expand=True)
    face = only_face(turned)
    crop = align_face(turned, face)
    assert abs(eye_angle(map_points(alignment_matrix(face), face.landmarks))) < 2  # eyes level
    assert crop_difference(crop, upright) < 12


def test_faces_at_the_edge_are_padded_with_black(astronaut):
    face = only_face(astronaut)
    top = 85  # cut the photo just above the eyes
    cut = astronaut.crop((0, top, 512, 512))
    moved = Detection(box=(face.box[0], face.box[1] - top, face.box[2], face.box[3] - top),
                      landmarks={k: (x, y - top) for k, (x, y) in face.landmarks.items()}, score=face.score)
    crop = np.asarray(align_face(cut, moved))
    assert (crop[:10] == 0).all()  # rows above the photo
    assert crop[60:].mean() > 60  # the face below


@pytest.mark.skipif(not UTKFACE.exists(), reason="needs ../shared/data/UTKFace.tar.gz")
def test_utkface_images_keep_their_framing():
    """A UTKFace aligned crop run through detect and align comes back almost unchanged."""
    scales, angles, shifts, diffs = [], [], [], []
    with tarfile.open(UTKFACE) as tar:
        for member in tar:
            if not member.name.endswith(".jpg"):
                continue
            image = Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB")
            faces = detect_faces(image)
            if faces:
                face = min(faces, key=lambda f: math.dist(((f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2),
                                                          (100, 100)))
                m = alignment_matrix(face)
                scales.append(math.hypot(m[0, 0], m[1, 0]))
                angles.append(math.degrees(math.atan2(m[1, 0], m[0, 0])))
                shifts.append(math.dist(m @ [100, 100, 1], (100, 100)))
                diffs.append(crop_difference(align_face(image, face), image))
            if len(scales) == 16:
                break
    assert len(scales) >= 14
    assert abs(np.median(scales) - 1) < 0.08
    assert abs(np.median(angles)) < 3
    assert np.median(shifts) < 6
    assert np.median(diffs) < 20


# ----- annotation --------------------------------------------------------------------------------
def test_annotate_draws_boxes_and_labels_on_a_copy(astronaut):
    found = only_face(astronaut)
    face = Face(box=tuple(int(v) for v in found.box), landmarks=found.landmarks, score=found.score,
                predictions={"custom": {"age": 34.4, "gender": "female"}, "vgg16": {"age": 40.0, "gender": "female"}})
    before = np.asarray(astronaut).copy()
    out = annotate(astronaut, [face], "custom")
    assert np.array_equal(np.asarray(astronaut), before)
    assert out.size == astronaut.size
    diff = np.abs(np.asarray(out, np.int16) - before).sum(axis=2) > 0
    x0, y0, x1, _ = face.box
    assert diff[y0, x0:x1].mean() > 0.9  # the top edge of the box
    assert diff[:y0, x0:x1].any()  # the label above it
    assert not diff[400:, :100].any()  # nothing far away
    both = annotate(astronaut, [face])  # every model's label: a taller label
    assert (np.abs(np.asarray(both, np.int16) - before).sum(axis=2) > 0).sum() > diff.sum()
    assert annotate(astronaut, []).size == astronaut.size
