"""The agegender Space: a custom CNN and a VGG16 estimate age and gender side by side, in Gradio.

A thin layer over the library: `agegender.estimator.Estimator` finds the faces and runs the
models, `agegender.faces.annotate` draws them. This file only decides where each model comes from
(`SPACE_MODELS`, overridden by environment variables), lays out the page and serves `/predict`.

    python app.py [--share] [--host 0.0.0.0] [--port 7860]
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gradio as gr  # noqa: E402
from PIL import Image  # noqa: E402

from agegender.estimator import Estimator, Face  # noqa: E402
from agegender.faces import annotate  # noqa: E402
from agegender.images import ImageError, load_image  # noqa: E402
from agegender.loading import WEIGHTS_DIR, fetch_snapshot, looks_like_repo_id, resolve_model_dir  # noqa: E402
from agegender.model import AgeGenderModel  # noqa: E402

log = logging.getLogger("agegender.app")

# The examples gallery: the package's public-domain photos, plus the Space's own (a photo without a face).
EXAMPLE_DIRS = (WEIGHTS_DIR.parent / "examples", Path(__file__).parent / "examples")
MAX_FILE_SIZE = "10mb"  # uploads above this are refused before they reach the models
CONCURRENCY = 2  # events run at once (the machine's cores); the rest wait in the queue
QUEUE_SIZE = 64  # waiting events beyond this are refused with "queue full"
DISPLAY_SIDE = 1280  # annotated images are shrunk to this longer side for the page
TABLE_HEADERS = ["face", "age", "80% range", "gender", "confidence", "time (ms)"]


@dataclass(frozen=True)
class ModelSlot:
    """One column of the page: which model goes there and where it is loaded from."""

    key: str  # the model's name in /predict's JSON ("custom", "vgg16")
    title: str  # the column's heading
    repo: str  # the Hub repo it is pulled from, unless `env` is set
    env: str  # environment variable naming another Hub repo or a local model directory
    fallback: Path | None  # the embedded model used when the repo cannot be loaded (None: no fallback)


# The one place that says where the Space's models come from.
SPACE_MODELS = (
    ModelSlot("custom", "Custom CNN", "agegender/custom-cnn-utkface", "AGEGENDER_CUSTOM_REPO", WEIGHTS_DIR / "custom"),
    ModelSlot("vgg16", "VGG16", "agegender/vgg16-utkface", "AGEGENDER_VGG16_REPO", None),
)


@dataclass
class LoadedModel:
    """The outcome of loading one slot: the model and its directory, or why there is none."""

    slot: ModelSlot
    model: AgeGenderModel | None
    directory: Path | None  # where its card (README.md) and plots (*.png) are, when it has them
    source: str  # where the model came from, in words (shown on the page and in /predict)
    problem: str | None = None  # why it is unavailable and what to do; None when loaded
    detail: str | None = None  # why the embedded fallback stands in for the repo (shown in the model's tab)


def example_photos() -> list[Path]:
    """The photos of the examples gallery, by name."""
    return sorted((p for d in EXAMPLE_DIRS for p in d.glob("*.jpg")), key=lambda p: p.name)


def docs_dir(wanted: str, model_dir: Path) -> Path:
    """Where a model's card and plots are: its own directory, or for a Hub repo a snapshot of just those files.

    (Loading a Hub model fetches only config.json and model.keras.) Without them the tab shows less, no error.
    """
    if Path(wanted).is_dir() or not looks_like_repo_id(wanted):
        return model_dir
    try:
        return fetch_snapshot(wanted, allow_patterns=["README.md", "*.png"])
    except Exception as exc:  # noqa: BLE001
        log.warning("cannot fetch the card and plots of %s: %s", wanted, exc)
        return model_dir


def load_slot(slot: ModelSlot, environ: Mapping[str, str] = os.environ) -> LoadedModel:
    """Load a slot's model from its repo (or the env override), else its embedded fallback, else say why not."""
    wanted = environ.get(slot.env) or slot.repo
    via = f"set by {slot.env}" if environ.get(slot.env) else "the Space's default"
    kind = "local directory" if Path(wanted).is_dir() else "Hub repo"
    # Any failure is caught (and logged): a Space must start even when one model cannot load.
    try:
        model_dir = resolve_model_dir(wanted)
        model = AgeGenderModel.from_directory(model_dir)
        return LoadedModel(slot, model, docs_dir(wanted, model_dir), f"{kind} `{wanted}` ({via})")
    except Exception as exc:  # noqa: BLE001
        log.warning("%s: cannot load %s: %s", slot.key, wanted, exc)
        error = f"{kind} `{wanted}` ({via}) could not be loaded: {exc}"
    if slot.fallback is not None and (slot.fallback / "model.keras").exists():
        try:
            model = AgeGenderModel.from_directory(resolve_model_dir(str(slot.fallback)))
            source = f"embedded default `{slot.fallback.name}`, standing in for {kind} `{wanted}`"
            return LoadedModel(slot, model, slot.fallback, source, detail=f"The {error}.")
        except Exception as exc:  # noqa: BLE001
            error += f"; the embedded default failed too: {exc}"
    todo = (f"To show it: train one (`python -m training.train --model {slot.key} --out runs/{slot.key}`), "
            f"push it to the Hub, and set `{slot.env}` to that repo id (or to a local model directory).")
    return LoadedModel(slot, None, None, "unavailable", f"The {error}. {todo}")


def metric_rows(metrics: Mapping[str, Any] | None) -> list[list[Any]]:
    """A model's `config["metrics"]` ({split: {metric: value}}) as table rows [split, metric, value]."""
    rows = []
    for split, values in (metrics or {}).items():
        for name, value in (values.items() if isinstance(values, Mapping) else [("", values)]):
            rows.append([split, name, round(value, 4) if isinstance(value, float) else value])
    return rows


def model_card(directory: Path) -> str:
    """The model card (README.md) without its YAML front matter; local images point to the plots above."""
    path = directory / "README.md"
    if not path.exists():
        return f"No model card (README.md) in `{directory}`."
    text = re.sub(r"\A---\n.*?\n---\n", "", path.read_text(encoding="utf-8"), flags=re.S)
    return re.sub(r"!\[([^\]]*)\]\((?!https?://)[^)]*\)", r"*(plot above: \1)*", text)


def model_plots(directory: Path) -> list[tuple[Path, str]]:
    """A model's plots (*.png, subfolders too), in the card's order, captioned with the card's alt text."""
    card = (directory / "README.md").read_text(encoding="utf-8") if (directory / "README.md").exists() else ""
    alts = {path: alt for alt, path in re.findall(r"!\[([^\]]*)\]\(([^)\s]+)\)", card)}
    order = list(alts)
    files = [(p, p.relative_to(directory).as_posix()) for p in directory.rglob("*.png")]
    files.sort(key=lambda f: (order.index(f[1]) if f[1] in alts else len(order), f[1]))
    return [(path, alts.get(rel) or path.stem.replace("_", " ")) for path, rel in files]


def compare(faces: Sequence[Mapping[str, Any]], a: str, b: str) -> list[dict[str, Any]]:
    """Per face that both models saw: the age gap (b minus a, years) and whether their genders agree."""
    out = []
    for i, face in enumerate(faces, 1):
        pa, pb = face["predictions"].get(a), face["predictions"].get(b)
        if pa and pb:
            out.append({"face": i, "age_difference": round(pb["age"] - pa["age"], 1),
                        "gender_agrees": pa["gender"] == pb["gender"]})
    return out


def comparison_text(payload: Mapping[str, Any], a: str, b: str) -> str:
    """One line for the page: where the two models disagree, and by how much."""
    rows = payload["comparison"]
    if not payload["faces"]:
        return "No face found in this photo."
    if not rows:
        missing = [k for k in (a, b) if not payload["models"][k]["available"]]
        return f"No comparison: {', '.join(missing)} is unavailable (see its column)."
    disagree = [str(r["face"]) for r in rows if not r["gender_agrees"]]
    gender = (f"they disagree on gender for face {', '.join(disagree)}" if disagree
              else f"they agree on gender for {'every face' if len(rows) > 1 else 'the face'}")
    gaps = [abs(r["age_difference"]) for r in rows]
    worst = max(rows, key=lambda r: abs(r["age_difference"]))
    gap = worst["age_difference"]
    age = (f"ages differ by {sum(gaps) / len(gaps):.1f} years on average, most for face {worst['face']}, "
           f"where {b} says {abs(gap):.1f} years {'more' if gap > 0 else 'less'}" if gap else "they give the same ages")
    return f"**{a} vs {b}:** {gender}; {age}."


class Space:
    """The loaded models, one Estimator over them, and the handlers the page and `/predict` call."""

    def __init__(self, loaded: Mapping[str, LoadedModel]):
        self.loaded = dict(loaded)
        self.estimator = Estimator(models={k: m.model for k, m in self.loaded.items() if m.model is not None})

    def predict(self, image: str | Path | Image.Image | None) -> dict[str, Any]:
        """The `/predict` endpoint: one photo in, JSON out (faces with every model's answer; schema in README)."""
        if image is None:
            raise gr.Error("Choose a photo first: upload one, use the webcam, paste one, or pick an example.")
        try:
            faces, photo = self.estimator.analyse(image)  # timings are kept per thread by the Estimator
            timings, capped = dict(self.estimator.last_timings), self.estimator.last_capped
        except ImageError as exc:
            raise gr.Error(f"This file cannot be used as a photo: {exc}") from exc
        models = {key: {"available": m.model is not None, "name": m.model.name if m.model else None,
                        "source": m.source, "problem": m.problem, "time_ms": timings.get(f"{key}_ms")}
                  for key, m in self.loaded.items()}
        face_dicts = [f.to_dict() for f in faces]
        a, b = list(self.loaded)[:2] if len(self.loaded) >= 2 else (None, None)
        return {"image": {"width": photo.width, "height": photo.height}, "faces": face_dicts, "capped": capped,
                "models": models, "comparison": compare(face_dicts, a, b) if a else [], "timings_ms": timings}

    def render(self, image: str | Path | Image.Image | None, payload: Mapping[str, Any] | None) -> list[Any]:
        """The page's outputs from a photo and its /predict JSON: per model an annotated image and a table,
        then the comparison line."""
        if image is None or not payload:
            return [None, []] * len(self.loaded) + [""]
        photo = load_image(image)
        faces = [Face(**f) for f in payload["faces"]]
        outputs: list[Any] = []
        for key in self.loaded:
            info = payload["models"][key]
            if not info["available"]:
                outputs += [None, []]
                continue
            shown = annotate(photo, faces, key)
            shown.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE))
            rows = [[i, round(p["age"], 1), f"{p['age_interval'][0]:.0f}-{p['age_interval'][1]:.0f}", p["gender"],
                     f"{p['confidence']:.0%}", round(info["time_ms"] or 0.0, 1)]
                    for i, p in enumerate((f.predictions[key] for f in faces), 1)]
            outputs += [shown, rows]
        keys = list(self.loaded)
        line = comparison_text(payload, *keys[:2]) if len(keys) >= 2 else ""
        detect = payload["timings_ms"].get("detect_ms")
        return outputs + [line + (f" Face detection took {detect:.0f} ms, shared by both." if detect else "")]


def model_tab(loaded: LoadedModel) -> None:
    """A tab's contents: where the model came from, then its metrics, plots and card (or why it is missing)."""
    gr.Markdown(f"**Source:** {loaded.source}" + (f"\n\n{loaded.detail}" if loaded.detail else ""))
    if loaded.model is None or loaded.directory is None:
        gr.Markdown(f"**Unavailable.** {loaded.problem}")
        return
    rows = metric_rows(loaded.model.config.get("metrics"))
    if rows:
        gr.Dataframe(value=rows, headers=["split", "metric", "value"], interactive=False, label="Metrics")
    # Loaded as images, so Gradio serves copies it made, never the model's directory.
    plots = [(Image.open(path).convert("RGB"), caption) for path, caption in model_plots(loaded.directory)]
    if plots:
        gr.Gallery(value=plots, label="Plots", columns=2, height="auto")
    gr.Markdown(model_card(loaded.directory))


def build_demo(space: Space) -> gr.Blocks:
    """The page: photo input and examples, one column per model, the comparison line, and a tab per model."""
    with gr.Blocks(title="agegender: age and gender from a photo") as demo:
        gr.Markdown("# Age and gender from a photo\nTwo networks trained on UTKFace, side by side. "
                    "Estimates from appearance only, often wrong and biased: "
                    "a demo, not a tool for decisions about people.")
        with gr.Tab("Compare"):
            image = gr.Image(label="Photo", type="filepath", image_mode=None, height=360, elem_id="photo",
                             sources=["upload", "webcam", "clipboard"])
            run = gr.Button("Estimate age and gender", variant="primary", elem_id="run")
            gr.Examples([[str(p)] for p in example_photos()], inputs=image, label="Examples (public-domain photos)")
            outputs: list[gr.components.Component] = []
            with gr.Row(equal_height=False):
                for key, loaded in space.loaded.items():
                    with gr.Column(min_width=300, elem_id=f"col-{key}"):
                        status = f"`{loaded.model.name}` from {loaded.source}" if loaded.model else \
                            f"**Unavailable.** {loaded.problem}"
                        gr.Markdown(f"### {loaded.slot.title}\n{status}")
                        shown = loaded.model is not None  # an unavailable model's column holds only why
                        outputs.append(gr.Image(label=f"{loaded.slot.title}: age, gender", type="pil", format="jpeg",
                                                interactive=False, visible=shown, elem_id=f"annotated-{key}"))
                        outputs.append(gr.Dataframe(headers=TABLE_HEADERS, interactive=False, label="Faces",
                                                    visible=shown, elem_id=f"table-{key}"))
            outputs.append(gr.Markdown(elem_id="comparison"))
            with gr.Accordion("JSON, as the /predict endpoint returns it", open=False):
                payload = gr.JSON(label="/predict")
        for loaded in space.loaded.values():
            with gr.Tab(loaded.slot.title):
                model_tab(loaded)
        run.click(space.predict, inputs=image, outputs=payload, api_name="predict",
                  api_description="Faces in one photo, with every model's age and gender (schema in README).") \
            .success(space.render, inputs=[image, payload], outputs=outputs, api_visibility="private")
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    return demo


def launch_options(share: bool = False, host: str | None = None, port: int | None = None) -> dict[str, Any]:
    """`demo.launch` keyword arguments: upload limit, nothing served but Gradio's own cache, optional share link."""
    return {"max_file_size": MAX_FILE_SIZE, "allowed_paths": [], "share": share, "server_name": host,
            "server_port": port, "footer_links": ["api", "gradio"]}


def parse_args(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> argparse.Namespace:
    """Command-line options; `GRADIO_SHARE=true` in the environment turns on `--share` too."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--share", action="store_true", help="also serve a public *.gradio.live link (72 hours)")
    p.add_argument("--host", help="interface to listen on (default 127.0.0.1, or GRADIO_SERVER_NAME)")
    p.add_argument("--port", type=int, help="port (default 7860, or GRADIO_SERVER_PORT)")
    args = p.parse_args(argv)
    args.share = args.share or environ.get("GRADIO_SHARE", "").strip().lower() in ("1", "true", "yes")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Load the models (Hub first, embedded fallback), build the page and serve it."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args(argv)
    space = Space({slot.key: load_slot(slot) for slot in SPACE_MODELS})
    for key, loaded in space.loaded.items():
        log.info("%s: %s", key, loaded.source if loaded.model else loaded.problem)
    build_demo(space).launch(**launch_options(args.share, args.host, args.port))


if __name__ == "__main__":
    main()
