"""The `agegender` command: `summary`, `evaluate` and `predict`.

Errors a user can cause (a bad path, a corrupt image, a missing model) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter off the terminal


class UserError(Exception):
    """An error caused by the input, reported as one line without a traceback."""


def _summary(args) -> int:
    from .data import load_utkface, summarize

    dd, report = load_utkface(args.source, seed=args.split_seed, return_report=True)
    s = summarize(dd, report)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    r = s["report"]
    print(f"source: {r['source']}\nkept: {r['kept']}   skipped: {r['skipped']}   "
          f"kept with label issues: {r['kept_with_issues']}   duplicate groups: {r['duplicate_groups']} "
          f"({r['duplicate_files']} extra copies)")
    for split, d in s["splits"].items():
        print(f"\n[{split}] n={d['n']}  mean age {d['mean_age']}")
        print("  age band: " + ", ".join(f"{k}: {v}" for k, v in d["age_band"].items()))
        print("  gender:   " + ", ".join(f"{k}: {v}" for k, v in d["gender"].items()))
        print("  race:     " + ", ".join(f"{k}: {v}" for k, v in d["race"].items()))
    if r["skipped_files"]:
        print("\nskipped:")
        for f in r["skipped_files"]:
            print(f"  {f['file']}: {f['reason']}")
    if r["kept_files_with_issues"]:
        print("\nkept, with a label issue (age and gender certain):")
        for f in r["kept_files_with_issues"]:
            print(f"  {f['file']}: {f['issues']}")
    return 0


def _evaluate(args) -> int:
    from .data import load_utkface, select_split
    from .evaluation import evaluate
    from .loading import load_model

    dd = load_utkface(args.data, seed=args.split_seed)
    ds = select_split(dd, args.split)
    model = load_model(args.model, revision=args.revision)
    m, pred = evaluate(model, ds, batch_size=args.batch_size)
    m["split"] = args.split
    m["data"] = str(args.data)
    if args.plots:
        from training.plots import evaluation_plots

        m["plots"] = [str(p) for p in evaluation_plots(m, pred, args.plots, prefix="")]
    if args.json:
        print(json.dumps(m))
        return 0
    print(f"model {m['model']} on {args.data} [{args.split}]: n={m['n']}")
    print(f"  age MAE {m['age_mae']:.3f} years   gender accuracy {m['gender_accuracy']:.2%}   "
          f"gender ECE {m['gender_ece']:.3f}   {m['images_per_second']:.0f} images/s")
    for title, key in (("age band", "per_age_band"), ("gender", "per_gender"), ("race", "per_race")):
        print(f"  by {title}:")
        for k, v in m.get(key, {}).items():
            if v["n"]:
                print(f"    {k:>8}: n={v['n']:<5} MAE {v['age_mae']:6.2f}   accuracy {v['gender_accuracy']:.2%}")
    return 0


def _predict(args) -> int:
    from .estimator import run_predict_cli

    return run_predict_cli(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="agegender", description="Age and gender estimation from face photos.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("summary", help="check a UTKFace source: counts, distributions, skipped files")
    s.add_argument("source", help="UTKFace archive, folder, or Hub dataset repo id")
    s.add_argument("--split-seed", type=int, default=0)
    s.add_argument("--json", action="store_true", help="print one JSON document")
    s.set_defaults(func=_summary)

    e = sub.add_parser("evaluate", help="score a model on UTKFace face crops")
    e.add_argument("data", help="UTKFace archive, folder, or Hub dataset repo id")
    e.add_argument("--model", default="custom", help="custom, custom-report, vgg16, a model directory or Hub repo id")
    e.add_argument("--revision", help="Hub revision (tag, branch or commit) when --model is a repo id")
    e.add_argument("--split", default="test", choices=["train", "validation", "test", "all"])
    e.add_argument("--split-seed", type=int, default=0)
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--plots", metavar="DIR", help="also write the evaluation plots to DIR")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(func=_evaluate)

    r = sub.add_parser("predict", help="find faces in photos and estimate age and gender")
    r.add_argument("images", nargs="+", metavar="IMAGE")
    r.add_argument("--model", default="custom", help="custom, vgg16, both, a model directory or Hub repo id")
    r.add_argument("--json", action="store_true", help="print one JSON document")
    r.add_argument("--annotate", metavar="OUT", help="write the image with boxes and labels (a folder for several)")
    r.set_defaults(func=_predict)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        import datasets

        datasets.disable_progress_bars()
    from .data import DataSourceError
    from .model import ModelLoadError

    try:
        return args.func(args)
    except (UserError, DataSourceError, ModelLoadError, FileNotFoundError, ValueError, OSError) as exc:
        print(f"agegender: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
