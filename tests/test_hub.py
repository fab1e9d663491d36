"""The Hub round trip and every way loading can fail, against a local stand-in for the Hugging Face Hub.

`FakeHub` keeps repos (commits, branches, tags, private and gated flags) in a temp dir and answers
the calls agegender makes: `HfApi.create_repo/create_branch/create_tag/upload_folder/repo_info` and
`snapshot_download`. It fails the way the Hub does: its errors come from huggingface_hub's own
`hf_raise_for_status` on a fake HTTP response, and a cached copy is served by the real
`snapshot_download(local_files_only=True)` from the real cache layout. `tests/test_cards.py` and
`tests/test_dataset_publish.py` import the `fake_hub` and `tiny_run` fixtures from here.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
import os
import shutil
import zipfile
from pathlib import Path
from types import SimpleNamespace

import httpx2
import huggingface_hub as hf
import huggingface_hub.hub_mixin as hub_mixin
import numpy as np
import pytest
from huggingface_hub._snapshot_download import snapshot_download as real_snapshot_download
from huggingface_hub.errors import OfflineModeIsEnabled
from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.utils import filter_repo_objects, hf_raise_for_status
from huggingface_hub.utils import logging as hf_logging
from PIL import Image

from conftest import synthetic_face, synthetic_names

OWNER_TOKEN = "hf_fakeOwnerToken0123456789abcdefXYZ"  # a made-up token; the stand-in accepts it as the owner


# ----- the stand-in -------------------------------------------------------------------------------------

class FakeHub:
    """A Hugging Face Hub in a temp dir: repos of commits with branches, tags, privacy and gating."""

    def __init__(self, root: Path):
        self.root = root / "hub"
        self.cache_dir = root / "hf-cache"
        self.repos: dict[tuple[str, str], dict] = {}
        self.reachable = True
        self.tokens_seen: list[str | None] = []  # every token presented, to check that auth flowed
        self._counter = itertools.count()

    # what the Hub answers ----------------------------------------------------------------------------
    @staticmethod
    def fail(status: int, path: str, code: str | None = None) -> None:
        """Raise exactly what huggingface_hub raises for this HTTP answer."""
        request = httpx2.Request("GET", f"https://huggingface.co/api/{path}")
        hf_raise_for_status(httpx2.Response(status, headers={"X-Error-Code": code} if code else {}, request=request))

    def contact(self) -> None:
        """Fail like huggingface_hub when HF_HUB_OFFLINE=1 is set or the Hub is out of reach."""
        if os.environ.get("HF_HUB_OFFLINE") == "1":
            raise OfflineModeIsEnabled("[fake hub] offline mode is enabled")
        if not self.reachable:
            raise httpx2.ConnectError("[fake hub] connection refused")

    def repo(self, repo_type: str, repo_id: str, token: str | None, write: bool = False) -> dict:
        """The repo record, or the error the Hub gives this caller."""
        self.contact()
        self.tokens_seen.append(token)
        path = f"{repo_type}s/{repo_id}"
        record = self.repos.get((repo_type, repo_id))
        if record is None or (record["private"] and token != record["owner"]):
            self.fail(401 if token is None else 404, path, None if token is None else "RepoNotFound")
        if record["gated"] and token is None:
            self.fail(403, path, "GatedRepo")
        if write and token != record["owner"]:
            self.fail(403, path)
        return record

    def resolve(self, record: dict, repo_type: str, repo_id: str, revision: str | None) -> str:
        revision = revision or "main"
        if revision in record["refs"]:
            return record["refs"][revision]
        if revision in record["commits"]:
            return revision
        self.fail(404, f"{repo_type}s/{repo_id}/revision/{revision}", "RevisionNotFound")
        raise AssertionError("unreachable")

    # what tests set up directly ----------------------------------------------------------------------
    def seed(self, repo_id: str, files: dict[str, bytes], repo_type: str = "model", private: bool = False,
             gated: bool = False) -> str:
        """Create a repo holding `files` (owned by OWNER_TOKEN) and return its commit id."""
        self.repos[(repo_type, repo_id)] = {"private": private, "gated": gated, "owner": OWNER_TOKEN,
                                            "refs": {}, "commits": {}}
        return self.commit(repo_type, repo_id, files, "main", "seed")

    def commit(self, repo_type: str, repo_id: str, files: dict[str, bytes], branch: str, message: str,
               delete_patterns: list[str] | str | None = None) -> str:
        record = self.repos[(repo_type, repo_id)]
        parent = record["refs"].get(branch)
        tree = dict(record["commits"][parent]) if parent else {".gitattributes": b"*.keras filter=lfs\n"}
        if delete_patterns:
            for path in list(filter_repo_objects(list(tree), allow_patterns=delete_patterns)):
                if path != ".gitattributes":
                    del tree[path]
        tree.update(files)
        digest = hashlib.sha1(f"{parent}{message}{next(self._counter)}".encode())
        for path in sorted(tree):
            digest.update(path.encode() + hashlib.sha1(tree[path]).digest())
        sha = digest.hexdigest()
        record["commits"][sha] = tree
        record["refs"][branch] = sha
        return sha

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        record = self.repos[(repo_type, repo_id)]
        return record["commits"][record["refs"].get(revision, revision)]

    # huggingface_hub's snapshot_download ------------------------------------------------------------
    def snapshot_download(self, repo_id: str, *, repo_type: str | None = None, revision: str | None = None,
                          cache_dir: str | Path | None = None, local_files_only: bool = False,
                          token: str | bool | None = None, allow_patterns: list[str] | None = None,
                          force_download: bool = False, **_: object) -> str:
        repo_type = repo_type or "model"
        cache_dir = Path(cache_dir or self.cache_dir)
        if local_files_only:  # the real function does this part, from the real cache layout
            return real_snapshot_download(repo_id, repo_type=repo_type, revision=revision, cache_dir=cache_dir,
                                          local_files_only=True, allow_patterns=allow_patterns)
        record = self.repo(repo_type, repo_id, _token(token))
        sha = self.resolve(record, repo_type, repo_id, revision)
        storage = cache_dir / repo_folder_name(repo_id=repo_id, repo_type=repo_type)
        snapshot = storage / "snapshots" / sha
        for path in filter_repo_objects(list(record["commits"][sha]), allow_patterns=allow_patterns):
            target = snapshot / path
            if force_download or not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(record["commits"][sha][path])
        if (revision or "main") != sha:
            (storage / "refs").mkdir(parents=True, exist_ok=True)
            (storage / "refs" / (revision or "main")).write_text(sha)
        return str(snapshot)

    # huggingface_hub's hf_hub_download ---------------------------------------------------------------
    def hf_hub_download(self, repo_id: str, filename: str, **kwargs: object) -> str:
        return str(Path(self.snapshot_download(repo_id, allow_patterns=[filename], **kwargs)) / filename)


def _token(token: str | bool | None) -> str | None:
    """The token a huggingface_hub call would send: the one given, else HF_TOKEN or the login store."""
    if token is False:
        return None
    return token if isinstance(token, str) else hf.get_token()


class FakeApi:
    """`huggingface_hub.HfApi` for the calls agegender makes, answered by a FakeHub."""

    def __init__(self, hub: FakeHub, token: str | bool | None = None, **_: object):
        self.hub = hub
        self.token = _token(token)

    def create_repo(self, repo_id: str, *, repo_type: str | None = None, private: bool | None = None,
                    exist_ok: bool = False, **_: object) -> hf.RepoUrl:
        repo_type = repo_type or "model"
        self.hub.contact()
        self.hub.tokens_seen.append(self.token)
        if self.token is None:
            self.hub.fail(401, "repos/create")
        if (repo_type, repo_id) not in self.hub.repos:
            self.hub.repos[(repo_type, repo_id)] = {"private": bool(private), "gated": False, "owner": self.token,
                                                    "refs": {}, "commits": {}}
        elif not exist_ok:
            self.hub.fail(409, "repos/create")
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return hf.RepoUrl(f"https://huggingface.co/{prefix}{repo_id}")

    def create_branch(self, repo_id: str, *, branch: str, revision: str | None = None,
                      repo_type: str | None = None, exist_ok: bool = False, **_: object) -> None:
        record = self.hub.repo(repo_type or "model", repo_id, self.token, write=True)
        if branch not in record["refs"]:
            if record["refs"]:
                record["refs"][branch] = self.hub.resolve(record, repo_type or "model", repo_id, revision)
            else:  # an empty repo: the branch starts with the initial commit
                self.hub.commit(repo_type or "model", repo_id, {}, branch, "Initial commit")

    def create_tag(self, repo_id: str, *, tag: str, revision: str | None = None, repo_type: str | None = None,
                   **_: object) -> None:
        record = self.hub.repo(repo_type or "model", repo_id, self.token, write=True)
        record["refs"][tag] = self.hub.resolve(record, repo_type or "model", repo_id, revision)

    def upload_folder(self, *, repo_id: str, folder_path: str | Path, repo_type: str | None = None,
                      revision: str | None = None, commit_message: str | None = None,
                      delete_patterns: list[str] | str | None = None, **_: object) -> hf.CommitInfo:
        repo_type = repo_type or "model"
        self.hub.repo(repo_type, repo_id, self.token, write=True)
        root = Path(folder_path)
        files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
        sha = self.hub.commit(repo_type, repo_id, files, revision or "main", commit_message or "upload",
                              delete_patterns)
        return hf.CommitInfo(commit_url=f"https://huggingface.co/{repo_id}/commit/{sha}",
                             commit_message=commit_message or "", commit_description="", oid=sha)

    def repo_info(self, repo_id: str, *, repo_type: str | None = None, revision: str | None = None,
                  **_: object) -> SimpleNamespace:
        record = self.hub.repo(repo_type or "model", repo_id, self.token)
        return SimpleNamespace(id=repo_id, sha=self.hub.resolve(record, repo_type or "model", repo_id, revision),
                               private=record["private"])


@pytest.fixture
def fake_hub(tmp_path, monkeypatch) -> FakeHub:
    """Route huggingface_hub's Hub calls to a FakeHub, online, with no token unless a test sets HF_TOKEN.

    HF_HUB_OFFLINE=0 tells agegender it is online, while huggingface_hub itself stays offline (it read
    the variable at import): a call that slipped past the stand-in fails at once instead of going out.
    """
    assert hf.constants.is_offline_mode(), "tests/conftest.py must set HF_HUB_OFFLINE=1 before importing"
    hub = FakeHub(tmp_path)
    monkeypatch.setattr(hf, "HfApi", lambda *a, **kw: FakeApi(hub, *a, **kw))
    monkeypatch.setattr(hub_mixin, "HfApi", lambda *a, **kw: FakeApi(hub, *a, **kw))
    monkeypatch.setattr(hf, "snapshot_download", hub.snapshot_download)
    monkeypatch.setattr(hf, "hf_hub_download", hub.hf_hub_download)
    monkeypatch.setattr(hf.constants, "HF_TOKEN_PATH", str(tmp_path / "no-stored-token"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return hub


# ----- a finished training run, built once per session from synthetic faces ---------------------------

_RUN: dict[str, Path] = {}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A real (tiny) run directory from `training.train` on 60 synthetic faces: model, metrics, plots."""
    if "run" not in _RUN:
        from training.train import parse_args, train

        data = tmp_path_factory.mktemp("tiny-utk")
        for i, name in enumerate(synthetic_names(60)):
            (data / name).write_bytes(synthetic_face(i))
        out = tmp_path_factory.mktemp("tiny-run")
        train(parse_args(["--model", "custom", "--recipe", "ours", "--data", str(data), "--out", str(out),
                          "--limit", "8", "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "4",
                          "--input-size", "32"]))
        _RUN["run"] = out
    return _RUN["run"]


def faces() -> list:
    """Face-sized test inputs in both accepted forms: uint8 arrays and PIL images."""
    arrays = [np.asarray(Image.open(io.BytesIO(synthetic_face(100 + i, size=70)))) for i in range(3)]
    return arrays + [Image.fromarray(a) for a in arrays]


def dir_files(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


# ----- push, then pull --------------------------------------------------------------------------------

def test_pushed_run_pulls_back_with_identical_predictions(fake_hub, tiny_run, monkeypatch):
    from agegender import AgeGenderModel, load_model
    from hub.push import push_run

    monkeypatch.setenv("HF_TOKEN", OWNER_TOKEN)  # logged in as the owner, the way a user is
    commit = push_run(tiny_run, "me/tiny-cnn")
    pushed = fake_hub.files("me/tiny-cnn")
    assert {"README.md", "config.json", "model.keras", "metrics.json", "recipe.json",
            "plots/test_mae_by_age_band.png"} <= set(pushed)
    config = json.loads(pushed["config.json"])
    assert config["preprocessing"]["input_size"] == 32 and config["labels"]["gender"] == ["male", "female"]

    local = AgeGenderModel.from_pretrained(tiny_run / "model")
    pulled = AgeGenderModel.from_pretrained("me/tiny-cnn", revision=commit.oid)
    assert pulled.predict(faces()) == local.predict(faces())
    assert load_model("me/tiny-cnn").predict(faces()) == local.predict(faces())
    assert pulled.config == local.config


def test_mixin_push_to_hub_writes_a_card_naming_the_repo(fake_hub, tiny_model_dir):
    from agegender import AgeGenderModel

    model = AgeGenderModel.from_pretrained(tiny_model_dir)
    model.push_to_hub("me/direct", private=True, token=OWNER_TOKEN)
    card = hf.ModelCard(fake_hub.files("me/direct")["README.md"].decode())
    assert card.data.library_name == "agegender" and 'from_pretrained("me/direct")' in card.text
    assert fake_hub.repos[("model", "me/direct")]["private"]
    pulled = AgeGenderModel.from_pretrained("me/direct", token=OWNER_TOKEN)
    assert pulled.predict(faces()) == model.predict(faces())


def test_plain_keras_loads_the_pushed_file_in_safe_mode(fake_hub, tiny_run, monkeypatch):
    import keras

    import agegender.models  # noqa: F401  registers the custom layers, as the README says
    from agegender import AgeGenderModel
    from hub.push import push_run

    monkeypatch.setenv("HF_TOKEN", OWNER_TOKEN)
    push_run(tiny_run, "me/tiny-cnn")
    snapshot = Path(hf.snapshot_download("me/tiny-cnn"))
    net = keras.saving.load_model(snapshot / "model.keras", safe_mode=True)  # default compile: no training code
    ours = AgeGenderModel.from_pretrained("me/tiny-cnn")
    x = ours.preprocess(faces())
    np.testing.assert_array_equal(net.predict_on_batch(x)["age"], ours.keras_model.predict_on_batch(x)["age"])


def test_revision_pins_a_commit_branch_or_tag(fake_hub, tiny_model_dir):
    from agegender import AgeGenderModel

    model = AgeGenderModel.from_pretrained(tiny_model_dir)
    model.config["name"] = "first"
    first = model.push_to_hub("me/pinned", token=OWNER_TOKEN)
    FakeApi(fake_hub, OWNER_TOKEN).create_tag("me/pinned", tag="v1", revision=first.oid)
    model.config["name"] = "second"
    model.push_to_hub("me/pinned", token=OWNER_TOKEN)
    assert AgeGenderModel.from_pretrained("me/pinned").name == "second"
    assert AgeGenderModel.from_pretrained("me/pinned", revision=first.oid).name == "first"
    assert AgeGenderModel.from_pretrained("me/pinned", revision="v1").name == "first"


# ----- the token never lands anywhere ------------------------------------------------------------------

def find_secret(secret: str, roots: list[Path], texts: list[str]) -> list[str]:
    """Every file under `roots` and every text that contains `secret`."""
    files = [p for root in roots for p in Path(root).rglob("*") if p.is_file()]
    hits = [str(p) for p in files if secret.encode() in p.read_bytes()]
    return hits + [f"text #{i}" for i, t in enumerate(texts) if secret in t]


def test_push_command_never_writes_or_logs_the_token(fake_hub, tiny_run, tmp_path, caplog, capfd, monkeypatch):
    from hub.push import main

    monkeypatch.setenv("HF_TOKEN", OWNER_TOKEN)
    caplog.set_level(logging.DEBUG)
    hf_logging.set_verbosity_debug()
    try:
        assert main(["run", str(tiny_run), "--repo-id", "me/secret", "--private", "--tag", "v1"]) == 0
        stage = tmp_path / "stage"
        assert main(["run", str(tiny_run), "--repo-id", "me/secret", "--stage-dir", str(stage)]) == 0
    finally:
        hf_logging.set_verbosity_warning()
    out = capfd.readouterr()
    assert OWNER_TOKEN in fake_hub.tokens_seen  # the push did authenticate with it
    assert "revision=" in out.out and fake_hub.files("me/secret", "v1") == fake_hub.files("me/secret")
    repo_dump = tmp_path / "repo-dump"
    for path, data in fake_hub.files("me/secret").items():
        (repo_dump / path).parent.mkdir(parents=True, exist_ok=True)
        (repo_dump / path).write_bytes(data)
    roots = [repo_dump, stage, tiny_run, fake_hub.cache_dir]
    assert find_secret(OWNER_TOKEN, roots, [caplog.text, out.out, out.err]) == []
    (stage / "leak.txt").write_text(f"token={OWNER_TOKEN}")  # the scan itself finds a planted leak
    assert find_secret(OWNER_TOKEN, roots, []) == [str(stage / "leak.txt")]


def test_push_without_a_token_says_how_to_log_in(fake_hub, tiny_run, capsys):
    from hub.push import main

    assert main(["run", str(tiny_run), "--repo-id", "me/nope"]) == 2
    assert "hf auth login" in capsys.readouterr().err
    assert ("model", "me/nope") not in fake_hub.repos


def test_push_refuses_an_unfinished_run(tmp_path, capsys):
    from hub.push import main

    (tmp_path / "model").mkdir()
    assert main(["run", str(tmp_path), "--repo-id", "me/x", "--stage-dir", str(tmp_path / "stage")]) == 2
    assert "metrics.json" in capsys.readouterr().err


# ----- every failure gets a clear error ----------------------------------------------------------------

def _corrupt(data: bytes) -> bytes:
    return data[: len(data) // 2]


def test_missing_repo(fake_hub, monkeypatch):
    from agegender import ModelLoadError, load_model

    monkeypatch.setenv("HF_TOKEN", OWNER_TOKEN)
    with pytest.raises(ModelLoadError, match="'me/absent' was not found.*check the repo id"):
        load_model("me/absent")


def test_private_repo_without_a_token(fake_hub, tiny_model_dir):
    from agegender import ModelLoadError, load_model

    fake_hub.seed("me/private", dir_files(tiny_model_dir), private=True)
    with pytest.raises(ModelLoadError, match="private and no token was given.*hf auth login.*HF_TOKEN"):
        load_model("me/private")
    assert load_model("me/private", token=OWNER_TOKEN).name == "tiny-test"


def test_gated_repo(fake_hub, tiny_model_dir):
    from agegender import ModelLoadError, load_model

    fake_hub.seed("me/gated", dir_files(tiny_model_dir), gated=True)
    with pytest.raises(ModelLoadError, match="gated: accept its access conditions"):
        load_model("me/gated")


def test_unknown_revision(fake_hub, tiny_model_dir):
    from agegender import ModelLoadError, load_model

    fake_hub.seed("me/tiny", dir_files(tiny_model_dir))
    with pytest.raises(ModelLoadError, match="has no revision 'v9'"):
        load_model("me/tiny", revision="v9")


@pytest.mark.parametrize("files, message", [
    ({"config.json": b'{"model_type": "bert"}', "model.safetensors": b"\0" * 16}, "format None, not 'agegender/1'"),
    ({"README.md": b"# someone else's model"}, "it has no config.json"),
])
def test_repo_that_is_not_ours(fake_hub, files, message):
    from agegender import ModelLoadError, load_model

    fake_hub.seed("them/other", files)
    with pytest.raises(ModelLoadError, match=f"is not an agegender model: .*{message}"):
        load_model("them/other")


def test_corrupt_download_says_to_download_again_and_that_fixes_it(fake_hub, tiny_model_dir):
    from agegender import AgeGenderModel, ModelLoadError

    fake_hub.seed("me/tiny", dir_files(tiny_model_dir))
    snapshot = Path(hf.snapshot_download("me/tiny"))
    (snapshot / "model.keras").write_bytes(_corrupt((snapshot / "model.keras").read_bytes()))
    with pytest.raises(ModelLoadError, match="download is corrupt: fetch it again with force_download=True"):
        AgeGenderModel.from_pretrained("me/tiny")
    assert AgeGenderModel.from_pretrained("me/tiny", force_download=True).name == "tiny-test"


def test_corrupt_config_in_the_repo(fake_hub, tiny_model_dir):
    from agegender import ModelLoadError, load_model

    fake_hub.seed("me/broken", {**dir_files(tiny_model_dir), "config.json": b'{"format": "agegender/1", '})
    with pytest.raises(ModelLoadError, match="config.json is not valid JSON"):
        load_model("me/broken")


def test_unsafe_keras_file_is_refused(fake_hub, tmp_path, tiny_model_dir):
    import keras

    from agegender import ModelLoadError, load_model

    net = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: x * 2)])
    net.save(tmp_path / "model.keras")  # arbitrary Python inside: Keras' safe mode must refuse it
    assert zipfile.is_zipfile(tmp_path / "model.keras")
    files = {"config.json": (tiny_model_dir / "config.json").read_bytes(),
             "model.keras": (tmp_path / "model.keras").read_bytes()}
    fake_hub.seed("evil/lambda", files)
    with pytest.raises(ModelLoadError, match="not a safe Keras model"):
        load_model("evil/lambda")


def test_offline_loads_the_cache_and_says_so(fake_hub, tiny_model_dir, monkeypatch, caplog):
    from agegender import ModelLoadError, load_model

    fake_hub.seed("me/tiny", dir_files(tiny_model_dir))
    online = load_model("me/tiny")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fake_hub.reachable = False  # and any attempt to reach it would fail
    with caplog.at_level(logging.WARNING):
        offline = load_model("me/tiny")
    assert "HF_HUB_OFFLINE is set: using the cached copy" in caplog.text
    assert offline.predict(faces()) == online.predict(faces())
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE is set, and model repo 'me/other' is not in the local"):
        load_model("me/other")


def test_unreachable_hub_loads_the_cache_and_says_so(fake_hub, tiny_model_dir, caplog):
    from agegender import ModelLoadError, load_model

    fake_hub.seed("me/tiny", dir_files(tiny_model_dir))
    load_model("me/tiny")
    fake_hub.reachable = False
    with caplog.at_level(logging.WARNING):
        assert load_model("me/tiny").name == "tiny-test"
    assert "the Hub cannot be reached (ConnectError" in caplog.text and "cached copy" in caplog.text
    with pytest.raises(ModelLoadError, match="cannot be reached.*not in the local Hugging Face cache"):
        load_model("me/never-fetched")


def test_name_that_is_neither_a_directory_nor_a_repo_id():
    from agegender import ModelLoadError, load_model

    with pytest.raises(ModelLoadError, match="neither a model directory nor a Hub repo id"):
        load_model("no such thing")


def test_local_directory_is_checked_like_a_download(tmp_path, tiny_model_dir):
    from agegender import AgeGenderModel, ModelLoadError

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.keras").write_bytes(_corrupt((broken / "model.keras").read_bytes()))
    with pytest.raises(ModelLoadError, match="model.keras is not a readable Keras archive"):
        AgeGenderModel.from_pretrained(broken)
