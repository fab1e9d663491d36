"""The Space launched on localhost and called as a user's program would: with `gradio_client` and plain HTTP."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from the test server

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # app.py lives at the repository root, outside the package

import httpx  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import app  # noqa: E402

EXAMPLES = ROOT / "agegender" / "examples"  # public-domain face photos


@pytest.fixture(scope="module")
def client(server):
    return Client(server, verbose=False)


def test_predict_endpoint_returns_json_per_face_per_model(client):
    result = client.predict(handle_file(str(EXAMPLES / "five_faces.jpg")), api_name="/predict")
    assert isinstance(result, dict) and len(result["faces"]) == 5
    for face in result["faces"]:
        assert set(face["predictions"]) == {"custom", "vgg16"}
        assert set(face["predictions"]["vgg16"]) == {"age", "gender", "p_female", "confidence", "age_interval"}
    assert [row["face"] for row in result["comparison"]] == [1, 2, 3, 4, 5]
    assert result["models"]["custom"]["source"].startswith("local directory")


def test_only_predict_is_offered_to_clients(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert "/predict" in endpoints and "/render" not in endpoints
    assert [p["parameter_name"] for p in endpoints["/predict"]["parameters"]] == ["image"]
    assert len(endpoints["/predict"]["returns"]) == 1


def test_a_truncated_photo_comes_back_as_a_readable_error(client, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes((EXAMPLES / "astronaut.jpg").read_bytes()[:3000])
    with pytest.raises(AppError, match="cannot be used as a photo"):
        client.predict(handle_file(str(broken)), api_name="/predict")


def test_only_files_the_app_made_are_served(server, tiny_model_dir):
    with httpx.Client(base_url=server, timeout=30) as http:
        upload = http.post("gradio_api/upload", files={"files": ("a.jpg", (EXAMPLES / "astronaut.jpg").read_bytes())})
        assert upload.status_code == 200
        assert http.get(f"gradio_api/file={upload.json()[0]}").status_code == 200  # the route works...
        for private in (ROOT / "app.py", EXAMPLES / "astronaut.jpg", tiny_model_dir / "config.json"):
            assert http.get(f"gradio_api/file={private}").status_code == 403, private  # ...but not for these


def test_uploads_over_the_size_limit_are_refused(server):
    with httpx.Client(base_url=server, timeout=60) as http:
        def upload(size: int) -> int:
            return http.post("gradio_api/upload", files={"files": ("big.jpg", b"\0" * size)}).status_code

        assert upload(9_000_000) == 200  # MAX_FILE_SIZE is 10 MB
        assert upload(10 * 1024 * 1024 + 1) == 413
