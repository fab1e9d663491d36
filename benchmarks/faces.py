"""Benchmarks for photos -> faces -> age and gender: detector recall and speed, end-to-end latency.

    nice -n 15 .venv/bin/python benchmarks/faces.py                 # markdown tables on stdout
    PYTHONPATH=/tmp/bench-extra nice -n 15 .venv/bin/python benchmarks/faces.py
        # also compares dlib's HOG detector and OpenCV's Haar cascade when they can be imported
        # (pip install --target /tmp/bench-extra dlib-bin==20.0.1.post1 "opencv-python-headless<5")
    .venv/bin/python benchmarks/faces.py --utkface ../shared/data/UTKFace.tar.gz
        # measures where MTCNN's landmarks fall in UTKFace's aligned crops (faces.UTKFACE_TEMPLATE)

Test photos are public domain and ship in packages: NASA's astronaut portrait (scikit-image)
and Grace Hopper's official portrait (matplotlib). Composites paste copies of their faces at
known places, sizes, angles and brightness on a plain background, so recall can be counted.
Results and the choice of detector are in benchmarks/faces.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

Box = tuple[float, float, float, float]

# Hand-checked face boxes (forehead to chin, ear to ear) in the two public-domain photos.
SOURCE_BOXES = {"astronaut": (181, 58, 269, 176), "grace_hopper": (176, 110, 356, 344)}


def source_photo(name: str) -> Image.Image:
    """One of the two public-domain portraits, as shipped by scikit-image and matplotlib."""
    if name == "astronaut":
        from skimage import data

        return Image.fromarray(data.astronaut())
    import matplotlib.cbook

    return Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")


def single_face_photo() -> tuple[Image.Image, Box]:
    """A 640x480 photo with one face: the astronaut portrait scaled to 640 wide, top 480 rows."""
    photo = source_photo("astronaut").resize((640, 640), Image.LANCZOS).crop((0, 0, 640, 480))
    x0, y0, x1, y1 = SOURCE_BOXES["astronaut"]
    return photo, (x0 * 1.25, y0 * 1.25, x1 * 1.25, y1 * 1.25)


def make_composite(seed: int, n_faces: int = 5, size: tuple[int, int] = (640, 480),
                   face_px: tuple[int, int] = (40, 110), max_angle: float = 15.0) -> tuple[Image.Image, list[Box]]:
    """A photo of `n_faces` face copies at random non-overlapping places; returns it and the true face boxes."""
    rng = np.random.default_rng(seed)
    w, h = size
    # a plain, slightly noisy background with a vertical gradient
    grad = np.linspace(70, 170, h)[:, None, None] * np.array([0.8, 0.9, 1.0])[None, None, :]
    bg = np.clip(grad + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)
    canvas = Image.fromarray(bg)
    sources = {name: source_photo(name) for name in SOURCE_BOXES}
    placed: list[tuple[float, float, float]] = []  # centre x, centre y, radius
    truth: list[Box] = []
    for i in range(n_faces):
        name = list(SOURCE_BOXES)[i % 2]
        src, (bx0, by0, bx1, by1) = sources[name], SOURCE_BOXES[name]
        bw, bh = bx1 - bx0, by1 - by0
        margin = 0.35 * max(bw, bh)
        patch_box = (int(bx0 - margin), int(by0 - margin), int(bx1 + margin), int(by1 + margin))
        patch = src.crop(patch_box)
        mask = Image.new("L", patch.size, 0)
        ImageDraw.Draw(mask).ellipse((margin * 0.3, margin * 0.3, patch.width - margin * 0.3,
                                      patch.height - margin * 0.3), fill=255)
        mask = mask.filter(ImageFilter.GaussianBlur(margin * 0.15))
        target = rng.uniform(*face_px)
        scale = target / bw
        new_size = (max(1, round(patch.width * scale)), max(1, round(patch.height * scale)))
        patch, mask = patch.resize(new_size, Image.LANCZOS), mask.resize(new_size, Image.BILINEAR)
        if rng.random() < 0.5:
            patch, mask = patch.transpose(Image.FLIP_LEFT_RIGHT), mask.transpose(Image.FLIP_LEFT_RIGHT)
        angle = rng.uniform(-max_angle, max_angle)
        patch = patch.rotate(angle, resample=Image.BICUBIC, expand=True)
        mask = mask.rotate(angle, resample=Image.BILINEAR, expand=True)
        gain = rng.uniform(0.75, 1.2)
        patch = Image.fromarray(np.clip(np.asarray(patch, np.float32) * gain, 0, 255).astype(np.uint8))
        radius = max(patch.size) / 2 * 0.8  # the feathered corners may overlap
        for _ in range(2000):
            cx, cy = rng.uniform(radius, w - radius), rng.uniform(radius, h - radius)
            if all((cx - px) ** 2 + (cy - py) ** 2 > (radius + pr) ** 2 for px, py, pr in placed):
                break
        else:
            raise RuntimeError("no room for another face; use fewer or smaller faces")
        placed.append((cx, cy, radius))
        canvas.paste(patch, (round(cx - patch.width / 2), round(cy - patch.height / 2)), mask)
        # the face centre relative to the patch centre, moved by the same flip and rotation
        fx = (bx0 + bx1) / 2 - (patch_box[0] + patch_box[2]) / 2
        fy = (by0 + by1) / 2 - (patch_box[1] + patch_box[3]) / 2
        fx, fy = fx * scale, fy * scale
        a = np.radians(angle)
        rx, ry = fx * np.cos(a) + fy * np.sin(a), -fx * np.sin(a) + fy * np.cos(a)
        ccx, ccy = round(cx - patch.width / 2) + patch.width / 2 + rx, round(cy - patch.height / 2) + patch.height / 2 + ry
        truth.append((ccx - bw * scale / 2, ccy - bh * scale / 2, ccx + bw * scale / 2, ccy + bh * scale / 2))
    return canvas, truth


def match(truth: list[Box], found: list[Box]) -> tuple[int, int]:
    """(true faces found, false detections): a detection finds a face when its centre lies in the
    true box and its size is within a factor of 2 (detectors frame faces differently)."""
    used, hits = set(), 0
    for tx0, ty0, tx1, ty1 in truth:
        tsize = np.sqrt((tx1 - tx0) * (ty1 - ty0))
        for j, (x0, y0, x1, y1) in enumerate(found):
            cx, cy, size = (x0 + x1) / 2, (y0 + y1) / 2, np.sqrt(max(x1 - x0, 0) * max(y1 - y0, 0))
            if j not in used and tx0 <= cx <= tx1 and ty0 <= cy <= ty1 and 0.5 <= size / tsize <= 2:
                used.add(j)
                hits += 1
                break
    return hits, len(found) - len(used)


def median_ms(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median wall time and median CPU time (all threads) of `fn` in milliseconds, after one untimed call.

    CPU time hardly depends on what else the machine runs; wall time does.
    """
    fn()
    wall, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t) * 1e3)
        cpu.append((time.process_time() - c) * 1e3)
    return statistics.median(wall), statistics.median(cpu)


# ----- detectors ---------------------------------------------------------------------------------
def detectors() -> dict[str, Callable[[Image.Image], list[Box]]]:
    """Every detector that can run here, by a descriptive name: photo in, boxes out."""
    from agegender.faces import MTCNNDetector

    out: dict[str, Callable[[Image.Image], list[Box]]] = {}
    for min_face in (20, 24, 32):
        det = MTCNNDetector(min_face=min_face)
        det.warm_up()
        out[f"MTCNN, one compiled graph (ours), min face {min_face} px"] = \
            lambda im, det=det: [d.box for d in det.detect(im, max_faces=None)]
    try:
        from mtcnn import MTCNN

        stock = MTCNN()
        out["mtcnn 1.0.0 package as shipped (min face 20 px)"] = lambda im: [
            (b["box"][0], b["box"][1], b["box"][0] + b["box"][2], b["box"][1] + b["box"][3])
            for b in stock.detect_faces(np.asarray(im))]
    except ImportError:
        pass
    try:
        import dlib

        hog = dlib.get_frontal_face_detector()
        for up in (0, 1):
            out[f"dlib-bin 20.0.1 HOG, upsample {up}"] = lambda im, up=up: [
                (r.left(), r.top(), r.right(), r.bottom()) for r in hog(np.asarray(im), up)]
    except ImportError:
        pass
    try:
        import cv2

        haar = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        out[f"OpenCV {cv2.__version__} Haar frontalface_default, min 24 px"] = lambda im: [
            (x, y, x + w, y + h) for x, y, w, h in haar.detectMultiScale(
                cv2.cvtColor(np.asarray(im), cv2.COLOR_RGB2GRAY), scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))]
    except (ImportError, AttributeError):
        pass
    return out


def compare_detectors(n_composites: int, repeat: int) -> list[dict]:
    """Recall, false detections and speed of each detector on composites and the single-face photo."""
    composites = [make_composite(seed) for seed in range(n_composites)]
    single, single_box = single_face_photo()
    rows = []
    for name, detect in detectors().items():
        hits = false = total = 0
        for photo, truth in composites + [(single, [single_box])]:
            h, f = match(truth, detect(photo))
            hits, false, total = hits + h, false + f, total + len(truth)
        single_ms, single_cpu = median_ms(lambda detect=detect: detect(single), repeat)
        composite_ms, composite_cpu = median_ms(lambda detect=detect: detect(composites[0][0]), repeat)
        rows.append({"detector": name, "faces": total, "found": hits, "recall": hits / total, "false": false,
                     "single_ms": single_ms, "single_cpu_ms": single_cpu,
                     "composite_ms": composite_ms, "composite_cpu_ms": composite_cpu})
        print(f"  {name}: recall {hits}/{total}, false {false}", file=sys.stderr)
    return rows


# ----- end to end --------------------------------------------------------------------------------
def tiny_model():
    """A small untrained model (as in the tests): its timings bound the pipeline's own overhead."""
    from agegender.model import AgeGenderModel
    from agegender.models import CustomCNNConfig, build_custom_cnn

    cfg = CustomCNNConfig(input_size=32, trunk=((4, 3), (8, 3)), padding="same", head="distribution", l2=0.0)
    model = AgeGenderModel(build_custom_cnn(cfg), {"name": "tiny-test", "architecture": "custom",
                                                   "recipe": {"model": cfg.__dict__}, "tta_flip": True})
    with tempfile.TemporaryDirectory() as tmp:  # a save/load round trip, as a real model is loaded
        model.save_pretrained(tmp)
        return AgeGenderModel.from_directory(tmp)


def jpeg(image: Image.Image) -> bytes:
    """The photo as JPEG bytes (quality 90), as a user would upload it."""
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def end_to_end(repeat: int, extra: dict[str, str]) -> tuple[list[dict], list[dict], dict]:
    """Latency per step for one model and for all models together, and faces/s in batch."""
    from agegender.estimator import Estimator
    from agegender.loading import load_model
    from agegender.model import ModelLoadError

    models = {"tiny": tiny_model()}
    unavailable = {}
    for name in ("custom", "vgg16", *extra):
        try:
            models[name] = load_model(extra.get(name, name))
        except ModelLoadError as exc:
            unavailable[name] = str(exc)
    photos = {"1 face, 640x480": jpeg(single_face_photo()[0]), "5 faces, 640x480": jpeg(make_composite(0)[0])}
    setups = {name: {name: m} for name, m in models.items()}
    real = {name: m for name, m in models.items() if name != "tiny"}
    if len(real) >= 2:  # every real model together, as `--model both` runs them
        setups[" + ".join(real)] = real
    latency = []
    for setup, chosen in setups.items():
        est = Estimator(models=chosen)
        for label, data in photos.items():
            runs, cpu = [], []
            est.predict(data)
            for _ in range(repeat):
                c = time.process_time()
                est.predict(data)
                cpu.append((time.process_time() - c) * 1e3)
                runs.append(dict(est.last_timings))
            row = {"models": setup, "photo": label, "faces": len(est.predict(data))}
            row.update({k: statistics.median(r[k] for r in runs) for k in runs[0]})
            row["best_ms"] = min(r["total_ms"] for r in runs)
            row["cpu_ms"] = statistics.median(cpu)
            latency.append(row)
    batch = []
    crops = [Image.fromarray(np.asarray(single_face_photo()[0].resize((200, 200))))] * 64
    for name, model in models.items():
        est = Estimator(models={name: model})
        ms = median_ms(lambda est=est: est.predict_crops(crops), max(3, repeat // 5))[0]
        batch.append({"model": name, "faces_per_s": 64 / ms * 1e3, "input_size": model.input_size})
    return latency, batch, unavailable


def machine() -> str:
    """A one-line description of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    import tensorflow as tf

    return (f"{os.cpu_count()} cores, {cpu}; Python {platform.python_version()}, TensorFlow {tf.__version__}; "
            f"load average {load:.1f} at the start; TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')}")


# ----- UTKFace template --------------------------------------------------------------------------
def utkface_template(archive: str, n: int = 120) -> dict:
    """Mean landmark positions of MTCNN in UTKFace's aligned 200x200 crops (nothing is written to disk)."""
    import random
    import tarfile

    from agegender.faces import LANDMARKS, MTCNNDetector

    det = MTCNNDetector()
    det.warm_up()
    with tarfile.open(archive) as tar:
        members = [m for m in tar if m.isfile() and m.name.endswith(".jpg")][:3000]
        random.Random(0).shuffle(members)
        points, missed = [], 0
        for m in members[:n]:
            image = Image.open(io.BytesIO(tar.extractfile(m).read())).convert("RGB")
            found = det.detect(image, max_faces=None)
            if not found:
                missed += 1
                continue
            best = min(found, key=lambda d: (d.box[0] + d.box[2] - 200) ** 2 + (d.box[1] + d.box[3] - 200) ** 2)
            points.append([best.landmarks[k] for k in LANDMARKS])
    pts = np.array(points)
    eyes = pts[:, 1] - pts[:, 0]
    return {"images": n, "missed": missed,
            "mean": {k: [round(float(v), 1) for v in pts[:, i].mean(axis=0)] for i, k in enumerate(LANDMARKS)},
            "std": {k: [round(float(v), 1) for v in pts[:, i].std(axis=0)] for i, k in enumerate(LANDMARKS)},
            "eye_distance": round(float(np.linalg.norm(eyes, axis=1).mean()), 1),
            "eye_angle_std_deg": round(float(np.degrees(np.arctan2(eyes[:, 1], eyes[:, 0])).std()), 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=20, help="timed runs per measurement (median reported)")
    p.add_argument("--composites", type=int, default=8, help="5-face composites for detector recall")
    p.add_argument("--skip-detectors", action="store_true", help="only the end-to-end latency")
    p.add_argument("--utkface", metavar="ARCHIVE", help="measure the UTKFace landmark template instead")
    p.add_argument("--model", action="append", default=[], metavar="LABEL=DIR",
                   help="also time the model in DIR (a model directory or Hub repo id) as LABEL")
    p.add_argument("--json", metavar="PATH", help="also write the raw results as JSON")
    p.add_argument("--write-example", metavar="DIR",
                   help="write the 5-face composite and its true boxes (five_faces.jpg/.json) to DIR and stop")
    args = p.parse_args()
    if args.write_example:
        photo, truth = make_composite(0)
        photo.save(Path(args.write_example) / "five_faces.jpg", quality=90, optimize=True)
        boxes = [[round(v, 1) for v in box] for box in truth]
        text = '{"faces": [\n' + ",\n".join(f"  {json.dumps(b)}" for b in boxes) + "\n]}\n"
        (Path(args.write_example) / "five_faces.json").write_text(text)
        return
    if args.utkface:
        print(json.dumps(utkface_template(args.utkface), indent=2))
        return
    results: dict = {"machine": machine()}
    print(f"Machine: {results['machine']}\n")
    if not args.skip_detectors:
        rows = results["detectors"] = compare_detectors(args.composites, args.repeat)
        print("| detector | recall | false detections | 1 face 640x480: wall / CPU ms | "
              "5 faces 640x480: wall / CPU ms |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['detector']} | {r['found']}/{r['faces']} ({r['recall']:.0%}) | {r['false']} | "
                  f"{r['single_ms']:.1f} / {r['single_cpu_ms']:.1f} | {r['composite_ms']:.1f} / "
                  f"{r['composite_cpu_ms']:.1f} |")
        print()
    latency, batch, unavailable = end_to_end(args.repeat, dict(m.split("=", 1) for m in args.model))
    results.update(latency=latency, batch=batch, unavailable=unavailable)
    print("| models | photo (JPEG bytes) | faces | decode | detect | align | models | total | best total | "
          "total CPU | faces/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in latency:
        model_ms = " + ".join(f"{k[:-3]} {r[k]:.1f}" for k in r if k.endswith("_ms") and k not in
                              ("load_ms", "detect_ms", "align_ms", "total_ms", "cpu_ms", "best_ms"))
        print(f"| {r['models']} | {r['photo']} | {r['faces']} | {r['load_ms']:.1f} | {r['detect_ms']:.1f} | "
              f"{r['align_ms']:.1f} | {model_ms} | {r['total_ms']:.1f} | {r['best_ms']:.1f} | {r['cpu_ms']:.1f} | "
              f"{r['faces'] / r['total_ms'] * 1e3:.0f} |")
    print("\n(milliseconds: medians of wall time, the best wall time, and the median CPU time of all threads)")
    print("\n| model | input | faces/s in batches of 64 crops |\n|---|---|---|")
    for b in batch:
        print(f"| {b['model']} | {b['input_size']} | {b['faces_per_s']:.0f} |")
    for name, reason in unavailable.items():
        print(f"\n{name}: not measured ({reason})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
