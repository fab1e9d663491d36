"""`load_model`: the one loader for built-in names, local directories and Hub repo ids.

Hub repos are fetched with `huggingface_hub.snapshot_download` (cached, pinnable with `revision`).
Every failure becomes a `ModelLoadError` (or the caller's error type) that says what to do. With
`HF_HUB_OFFLINE=1`, or when the Hub cannot be reached, the cached copy is used and a warning says so.
"""

from __future__ import annotations

import json
import logging
import os
import re
import zipfile
from pathlib import Path

import httpx2
import huggingface_hub as hf  # looked up at call time, so tests can stand in for the Hub
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from .model import CONFIG_FILE, FORMAT, MODEL_FILE, AgeGenderModel, ModelLoadError

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).parent / "weights"
MODEL_FILES = [CONFIG_FILE, MODEL_FILE]  # all a model needs; cards and plots stay on the Hub

# Built-in names. A name maps to an embedded directory (shipped in the package) and/or a Hub
# repo that an environment variable can set; the embedded copy needs no network.
BUILTIN = {
    "custom": {"embedded": "custom", "env": "AGEGENDER_CUSTOM_REPO"},
    "custom-report": {"embedded": "custom-report", "env": "AGEGENDER_CUSTOM_REPORT_REPO"},
    "vgg16": {"embedded": None, "env": "AGEGENDER_VGG16_REPO"},
}

_REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")
_TRUE = {"1", "ON", "YES", "TRUE"}


def looks_like_repo_id(name: str) -> bool:
    """True for `owner/name`, the only form of Hub repo id we accept."""
    return bool(_REPO_ID.fullmatch(name))


def hub_offline() -> bool:
    """True when `HF_HUB_OFFLINE` asks for no network, read now (huggingface_hub reads it once at import)."""
    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    if env is None:
        return hf.constants.is_offline_mode()
    return env.strip().upper() in _TRUE


def _has_token(token: str | bool | None) -> bool:
    """Whether a request would carry a token: an explicit one, or one from HF_TOKEN / `hf auth login`."""
    if token is False:
        return False
    if isinstance(token, str):
        return bool(token)
    return hf.get_token() is not None


def explain_hub_error(exc: HfHubHTTPError, repo_id: str, repo_type: str, revision: str | None,
                      token: str | bool | None) -> str:
    """A message for a Hub refusal that says what happened and what to do (it never contains the token)."""
    kind = "dataset" if repo_type == "dataset" else "model"
    url = f"https://huggingface.co/{'datasets/' if kind == 'dataset' else ''}{repo_id}"
    if isinstance(exc, GatedRepoError):
        return (f"the {kind} repo {repo_id!r} is gated: accept its access conditions at {url} while logged in, "
                "then log in here with `hf auth login` or set HF_TOKEN")
    if isinstance(exc, RepositoryNotFoundError):
        if not _has_token(token):
            return (f"the {kind} repo {repo_id!r} was not found on the Hugging Face Hub, or it is private and no "
                    "token was given: check the repo id; for a private repo log in with `hf auth login`, "
                    "set HF_TOKEN, or pass token=...")
        return (f"the {kind} repo {repo_id!r} was not found on the Hugging Face Hub, or your token cannot read it: "
                "check the repo id and that the account behind your token has access")
    if isinstance(exc, RevisionNotFoundError):
        return (f"the {kind} repo {repo_id!r} has no revision {revision!r}: pass a branch, tag or commit id that "
                f"exists (see {url}/commits/main)")
    status = exc.response.status_code
    if status == 401:
        return f"the Hub rejected your token for {repo_id!r}: log in again with `hf auth login` or fix HF_TOKEN"
    if status == 403:
        return f"your token may not read {repo_id!r}: use a token with read access to it"
    return f"the Hub answered {status} for {repo_id!r}: {exc.server_message or exc}"


def fetch_snapshot(
    repo_id: str,
    *,
    repo_type: str = "model",
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | Path | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
    allow_patterns: list[str] | None = None,
    error: type[Exception] = ModelLoadError,
) -> Path:
    """A local snapshot of a Hub repo: downloaded, or the cached copy (with a warning) when offline or unreachable.

    Raises `error` with a message that says what to do for a missing, private, gated or unknown-revision
    repo, and for a repo that is neither reachable nor cached.
    """
    what = f"{repo_type} repo {repo_id!r}" + (f" at revision {revision!r}" if revision else "")
    options = dict(repo_type=repo_type, revision=revision, cache_dir=cache_dir, token=token,
                   allow_patterns=allow_patterns)
    if local_files_only or hub_offline():
        reason = "local_files_only=True was passed" if local_files_only else "HF_HUB_OFFLINE is set"
        return _from_cache(repo_id, what, reason, error, options)
    try:  # one cheap call tells "the Hub said no" apart from "the Hub is out of reach"
        hf.HfApi(token=token).repo_info(repo_id, repo_type=repo_type, revision=revision)
    except (httpx2.TransportError, OfflineModeIsEnabled) as exc:
        return _from_cache(repo_id, what, f"the Hub cannot be reached ({type(exc).__name__}: {exc})", error, options)
    except HfHubHTTPError as exc:
        if exc.response.status_code >= 500:
            return _from_cache(repo_id, what, f"the Hub is failing (HTTP {exc.response.status_code})", error, options)
        raise error(explain_hub_error(exc, repo_id, repo_type, revision, token)) from exc
    try:
        return Path(hf.snapshot_download(repo_id, force_download=force_download, **options))
    except HfHubHTTPError as exc:
        raise error(explain_hub_error(exc, repo_id, repo_type, revision, token)) from exc
    except (httpx2.TransportError, LocalEntryNotFoundError) as exc:
        raise error(f"the download of {what} failed part-way ({type(exc).__name__}: {exc}): try again") from exc


def _from_cache(repo_id: str, what: str, reason: str, error: type[Exception], options: dict) -> Path:
    """The cached snapshot of a repo, with a warning that says why the Hub was not asked."""
    try:
        path = Path(hf.snapshot_download(repo_id, local_files_only=True, **options))
    except LocalEntryNotFoundError as exc:
        raise error(
            f"{reason}, and {what} is not in the local Hugging Face cache: connect to the internet once "
            "(and unset HF_HUB_OFFLINE) to download it, or load a local directory instead"
        ) from exc
    log.warning("%s: using the cached copy of %s at %s; it may be older than the Hub's", reason, what, path)
    return path


def check_model_dir(directory: Path, origin: str, downloaded: bool = False) -> None:
    """Refuse a directory that is not an agegender model or whose files are corrupt, before Keras reads it."""
    cfg_path, model_path = directory / CONFIG_FILE, directory / MODEL_FILE
    again = (" — the download is corrupt: fetch it again with force_download=True "
             f"(or delete {directory})") if downloaded else ""
    if not cfg_path.is_file():
        raise ModelLoadError(f"{origin} is not an agegender model: it has no {CONFIG_FILE} "
                             f"(an agegender repo holds {CONFIG_FILE} and {MODEL_FILE})")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{origin}: {CONFIG_FILE} is not valid JSON ({exc}){again}") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise ModelLoadError(f"{origin} is not an agegender model: its {CONFIG_FILE} has format {found!r}, not "
                             f"{FORMAT!r}; load it with the library that made it")
    if not model_path.is_file():
        raise ModelLoadError(f"{origin} has an agegender {CONFIG_FILE} but no {MODEL_FILE}{again}")
    try:
        with zipfile.ZipFile(model_path) as archive:
            bad = archive.testzip()  # reads every member and checks its CRC
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ModelLoadError(f"{origin}: {MODEL_FILE} is not a readable Keras archive ({exc}){again}") from exc
    if bad is not None:
        raise ModelLoadError(f"{origin}: {MODEL_FILE} is damaged ({bad} fails its checksum){again}")


def resolve_model_dir(model_id: str, revision: str | None = None, cache_dir: str | Path | None = None,
                      force_download: bool = False, local_files_only: bool = False,
                      token: str | bool | None = None) -> Path:
    """A checked local directory holding the model: `model_id` itself, or a Hub snapshot of it."""
    path = Path(model_id)
    if path.is_dir():
        check_model_dir(path, origin=str(path))
        return path
    if not looks_like_repo_id(model_id):
        raise ModelLoadError(f"{model_id!r} is neither a model directory nor a Hub repo id (owner/name)")
    directory = fetch_snapshot(model_id, revision=revision, token=token, cache_dir=cache_dir,
                               force_download=force_download, local_files_only=local_files_only,
                               allow_patterns=MODEL_FILES)
    check_model_dir(directory, origin=f"the Hub repo {model_id!r}", downloaded=True)
    return directory


def load_model(name: str = "custom", revision: str | None = None, token: str | bool | None = None,
               force_download: bool = False) -> AgeGenderModel:
    """Load a model by built-in name (`custom`, `custom-report`, `vgg16`), local directory or Hub repo id."""
    if name in BUILTIN:
        spec = BUILTIN[name]
        repo = os.environ.get(spec["env"])
        if repo:
            return AgeGenderModel.from_pretrained(repo, revision=revision, token=token, force_download=force_download)
        if spec["embedded"] and (WEIGHTS_DIR / spec["embedded"] / MODEL_FILE).exists():
            return AgeGenderModel.from_pretrained(WEIGHTS_DIR / spec["embedded"])
        raise ModelLoadError(
            f"no trained {name!r} model is available here: train one with "
            f"`python -m training.train --model {name.split('-')[0]} --recipe {(name.split('-') + ['ours'])[1]} "
            f"--data UTKFace.tar.gz --out runs/{name}` and load runs/{name}/model, "
            f"or set {spec['env']}=<hub repo id>"
        )
    return AgeGenderModel.from_pretrained(name, revision=revision, token=token, force_download=force_download)
