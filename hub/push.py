"""Publish to the Hugging Face Hub: a finished training run as a model repo, UTKFace as a dataset repo.

    python -m hub.push run runs/custom-ours --repo-id agegender/custom-cnn-utkface [--private] [--branch B] [--tag T]
    python -m hub.push dataset ../shared/data/UTKFace.tar.gz --repo-id agegender/utkface [--private]

A model repo gets `model.keras` and `config.json` (re-saved without the optimizer state), the
model card, the run's `metrics.json`, `recipe.json`, history and `plots/`; a dataset repo gets one
Parquet file per split under `data/`, the dataset card, a distribution plot and the load report.
Each push is one commit that replaces the repo's previous files. `--stage-dir DIR` writes the
files to DIR and stops, to review them first.

The token comes from the HF_TOKEN environment variable or `hf auth login`: huggingface_hub's
`HfApi` finds it, and this module never reads, prints or writes it.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

import httpx2
import huggingface_hub as hf  # looked up at call time, so tests can stand in for the Hub
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from hub.cards import DATASET_PLOT, DEFAULT_DATASET_REPO, PLOTS_DIR, RunError, dataset_card, distribution_plot, read_run

log = logging.getLogger("hub.push")

RUN_FILES = ("metrics.json", "recipe.json", "history.csv", "history.json")


class PushError(RuntimeError):
    """A push that cannot go ahead; the message says why and what to do."""


def stage_run(run_dir: str | Path, stage: Path, repo_id: str, dataset_repo: str = DEFAULT_DATASET_REPO) -> Path:
    """Write a run's model repo into `stage`: model, config and card (via `save_pretrained`), metrics and plots."""
    from agegender.model import AgeGenderModel

    run = read_run(run_dir)
    model = AgeGenderModel.from_pretrained(run.directory / "model")  # safe mode; refuses a broken model
    model.save_pretrained(stage, model_card_kwargs={"run": run, "repo_id": repo_id, "dataset_repo": dataset_repo})
    for name in RUN_FILES:
        if (run.directory / name).is_file():
            shutil.copy2(run.directory / name, stage / name)
    (stage / PLOTS_DIR).mkdir(exist_ok=True)
    for name in run.plots:
        shutil.copy2(run.directory / name, stage / PLOTS_DIR / name)
    return stage


def stage_dataset(source: str | Path, stage: Path, repo_id: str, split_seed: int = 0) -> Path:
    """Write a dataset repo into `stage`: Parquet per split, the dataset card, a distribution plot, the load report."""
    from agegender.data import load_utkface, summarize

    dd, report = load_utkface(source, seed=split_seed, return_report=True)
    empty = [split for split, ds in dd.items() if len(ds) == 0]
    if empty:
        raise PushError(f"{source} gives empty {', '.join(empty)} split(s): too few images to publish")
    report.source = Path(str(source)).name  # publish the file name, not this machine's path
    (stage / "data").mkdir(parents=True, exist_ok=True)
    for split, ds in dd.items():
        ds.to_parquet(str(stage / "data" / f"{split}-00000-of-00001.parquet"))
    summary = summarize(dd, report)
    distribution_plot(summary, stage / DATASET_PLOT)
    dataset_card(summary, repo_id, splits=list(dd)).save(stage / "README.md")
    (stage / "load_report.json").write_text(json.dumps(report.as_dict(), indent=2))
    return stage


def _explain_push_error(exc: Exception, repo_id: str) -> str:
    """What a refused or failed push means and what to do (never showing the token)."""
    if isinstance(exc, (httpx2.TransportError, OfflineModeIsEnabled)):
        return f"cannot reach the Hugging Face Hub ({type(exc).__name__}: {exc}): check the connection and retry"
    assert isinstance(exc, HfHubHTTPError)
    status = exc.response.status_code
    if hf.get_token() is None:
        return "pushing needs a write token: run `hf auth login` or set HF_TOKEN, then push again"
    if status == 401:
        return "the Hub rejected your token: log in again with `hf auth login` or fix HF_TOKEN"
    if status == 403:
        return f"your token may not write to {repo_id!r}: use a write token of an account that owns it"
    return f"the Hub refused the push to {repo_id!r} (HTTP {status}): {exc.server_message or exc}"


def upload(stage: Path, repo_id: str, repo_type: str, *, private: bool | None = None, branch: str | None = None,
           tag: str | None = None, message: str) -> hf.CommitInfo:
    """Create the repo if needed and replace its files with `stage` in one commit; optionally tag that commit."""
    api = hf.HfApi()  # finds the token in HF_TOKEN or the `hf auth login` store
    try:
        repo_id = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True).repo_id
        if branch:
            api.create_branch(repo_id, repo_type=repo_type, branch=branch, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, repo_type=repo_type, folder_path=stage, revision=branch,
                                   commit_message=message, delete_patterns="*")  # .gitattributes always stays
        if tag:
            api.create_tag(repo_id, repo_type=repo_type, tag=tag, revision=commit.oid)
    except (HfHubHTTPError, httpx2.TransportError, OfflineModeIsEnabled) as exc:
        raise PushError(_explain_push_error(exc, repo_id)) from exc
    log.info("pushed %s repo %s: commit %s", repo_type, repo_id, commit.oid)
    return commit


def _run_message(run_dir: Path) -> str:
    """The commit message of a run push: which run and its test figures."""
    test = read_run(run_dir).metrics.get("test", {})
    return (f"Publish run {run_dir.resolve().name}: test age MAE {test.get('age_mae')}, "
            f"gender accuracy {test.get('gender_accuracy')}")


def push_run(run_dir: str | Path, repo_id: str, *, private: bool | None = None, branch: str | None = None,
             tag: str | None = None, dataset_repo: str = DEFAULT_DATASET_REPO) -> hf.CommitInfo:
    """Push a finished training run (model, card, config, metrics, plots) to a Hub model repo."""
    with tempfile.TemporaryDirectory(prefix="agegender-push-") as tmp:
        stage = stage_run(run_dir, Path(tmp), repo_id, dataset_repo)
        return upload(stage, repo_id, "model", private=private, branch=branch, tag=tag,
                      message=_run_message(Path(run_dir)))


def push_dataset(source: str | Path, repo_id: str, *, private: bool | None = None, branch: str | None = None,
                 tag: str | None = None, split_seed: int = 0) -> hf.CommitInfo:
    """Push UTKFace (train/validation/test as Parquet) with its dataset card to a Hub dataset repo."""
    with tempfile.TemporaryDirectory(prefix="agegender-push-") as tmp:
        stage = stage_dataset(source, Path(tmp), repo_id, split_seed)
        return upload(stage, repo_id, "dataset", private=private, branch=branch, tag=tag,
                      message=f"Publish UTKFace from {Path(str(source)).name} (split seed {split_seed})")


def _empty_dir(path: str) -> Path:
    """A --stage-dir argument: a directory that is new or empty, so no stale file slips into a repo."""
    directory = Path(path)
    if directory.exists() and any(directory.iterdir()):
        raise argparse.ArgumentTypeError(f"{directory} is not empty")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m hub.push", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = parser.add_subparsers(dest="kind", required=True)
    run = kinds.add_parser("run", help="push a finished training run to a model repo")
    run.add_argument("run_dir", help="a directory written by `python -m training.train`")
    run.add_argument("--dataset-repo", default=DEFAULT_DATASET_REPO, help="the dataset repo the card links to")
    data = kinds.add_parser("dataset", help="push UTKFace to a dataset repo")
    data.add_argument("source", help="UTKFace archive, folder or Hub dataset id")
    data.add_argument("--split-seed", type=int, default=0, help="seed of the train/validation/test split")
    for sub in (run, data):
        sub.add_argument("--repo-id", required=True, help="owner/name of the Hub repo (created if missing)")
        sub.add_argument("--private", action="store_true", default=None, help="create the repo as private")
        sub.add_argument("--branch", help="push to this branch (created from main if missing) instead of main")
        sub.add_argument("--tag", help="tag the new commit, e.g. v1, so users can pin revision='v1'")
        sub.add_argument("--stage-dir", type=_empty_dir, help="write the repo's files here and stop (no push)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the command; a problem the user can fix prints one line and returns 2."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    from agegender.data import DataSourceError
    from agegender.model import ModelLoadError

    try:
        if args.stage_dir:
            if args.kind == "run":
                stage_run(args.run_dir, args.stage_dir, args.repo_id, args.dataset_repo)
            else:
                stage_dataset(args.source, args.stage_dir, args.repo_id, args.split_seed)
            print(f"wrote the files of {args.repo_id} to {args.stage_dir} (nothing pushed)")
            return 0
        options = dict(private=args.private, branch=args.branch, tag=args.tag)
        if args.kind == "run":
            commit = push_run(args.run_dir, args.repo_id, dataset_repo=args.dataset_repo, **options)
            load = f"agegender.AgeGenderModel.from_pretrained({args.repo_id!r}, revision={commit.oid!r})"
        else:
            commit = push_dataset(args.source, args.repo_id, split_seed=args.split_seed, **options)
            load = f"agegender.load_utkface({args.repo_id!r}, revision={commit.oid!r})"
    except (PushError, RunError, ModelLoadError, DataSourceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"pushed: {commit.commit_url}\nload exactly this version with: {load}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
