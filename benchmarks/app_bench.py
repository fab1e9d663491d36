"""Cold start and /predict latency of the Space, measured the way a user's program sees them.

Starts `python app.py` in a fresh process and times it until the page is served and until the
first /predict answer (cold start); then times /predict from 1 and from 8 concurrent clients,
each uploading a photo per request (the example photos in turn). Prints a Markdown table and a
JSON summary; results for this machine are in benchmarks/app.md.

    nice -n 15 .venv/bin/python benchmarks/app_bench.py [--requests 48] [--vgg16-stand-in] [--client gradio_client]

The default client speaks Gradio's documented HTTP API (upload, `POST /call/predict`, then read
the event stream), about 3 ms of CPU per call; `gradio_client` costs about 75 ms of CPU per
call, which on a 2-core machine that also runs the server would dominate the measurement.

`--vgg16-stand-in` fills the VGG16 column with an untrained VGG16 of the "ours" recipe's
architecture: the same compute as a trained one, for timing the Space with both models.
`--framework-floor` serves a /predict that does nothing (same input, output and queue settings
as app.py) instead: what Gradio and the client cost on this machine without any model.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The app's examples gallery (app.example_photos, not imported here: that would load TensorFlow).
EXAMPLES = sorted([*(ROOT / "agegender" / "examples").glob("*.jpg"), *(ROOT / "examples").glob("*.jpg")],
                  key=lambda p: p.name)


# A Gradio app with app.py's /predict signature and queue settings whose handler does no work.
NOOP_APP = """
import sys, gradio as gr
with gr.Blocks() as demo:
    photo, out = gr.Image(type="filepath", image_mode=None), gr.JSON()
    gr.Button().click(lambda p: {"faces": [], "models": {}, "timings_ms": {"total_ms": 0.0}}, photo, out,
                      api_name="predict")
demo.queue(default_concurrency_limit=2, max_size=64).launch(server_name="127.0.0.1", server_port=int(sys.argv[1]),
                                                            max_file_size="10mb")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vgg16_stand_in(directory: Path) -> Path:
    """An untrained VGG16 saved as an agegender model (architecture and test-time flip as the "ours" recipe)."""
    from agegender.model import AgeGenderModel
    from agegender.models import VGG16Config, build_vgg16

    cfg = VGG16Config(weights=None, scaling="caffe", head="distribution", trainable_base_layers=0)
    AgeGenderModel(build_vgg16(cfg), {"name": "vgg16-untrained-stand-in", "architecture": "vgg16",
                                      "tta_flip": True}).save_pretrained(directory)
    return directory


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear between the closest ranks."""
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def wait_until_served(url: str, process: subprocess.Popen, timeout: float = 300) -> None:
    """Poll the page until it answers 200 (raise if the server dies or takes longer than `timeout`)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with {process.returncode} before serving")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} not served after {timeout} s")


class HttpClient:
    """A /predict client over Gradio's plain HTTP API, as `curl` would call it (see the API page)."""

    def __init__(self, url: str):
        import httpx

        self.http = httpx.Client(base_url=url + "gradio_api/", timeout=300)

    def predict(self, path: Path) -> dict:
        with open(path, "rb") as f:
            upload = self.http.post("upload", files={"files": (path.name, f)})
        upload.raise_for_status()
        photo = {"path": upload.json()[0], "meta": {"_type": "gradio.FileData"}}
        event_id = self.http.post("call/predict", json={"data": [photo]}).json()["event_id"]
        kind = None
        with self.http.stream("GET", f"call/predict/{event_id}") as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    kind = line[len("event:"):].strip()
                elif line.startswith("data:") and kind in ("complete", "error"):
                    data = json.loads(line[len("data:"):])
                    if kind == "error":
                        raise RuntimeError(f"/predict failed: {data}")
                    return data[0]
        raise RuntimeError("/predict: the event stream ended without a result")


class GradioClient:
    """A /predict client over `gradio_client`, as the README shows."""

    def __init__(self, url: str):
        from gradio_client import Client

        self.client = Client(url, verbose=False)

    def predict(self, path: Path) -> dict:
        from gradio_client import handle_file

        return self.client.predict(handle_file(str(path)), api_name="/predict")


CLIENTS = {"http": HttpClient, "gradio_client": GradioClient}


def load(url: str, clients: int, requests: int, kind: str = "http") -> dict:
    """`requests` /predict calls spread over `clients` threads, each with its own client: latency stats."""
    latencies: list[float] = []
    server_ms: list[float] = []
    lock = threading.Lock()
    pool = [CLIENTS[kind](url) for _ in range(clients)]

    def work(client, first: int) -> None:
        for i in range(first, requests, clients):
            t = time.perf_counter()
            result = client.predict(EXAMPLES[i % len(EXAMPLES)])
            elapsed = time.perf_counter() - t
            with lock:
                latencies.append(elapsed * 1e3)
                server_ms.append(result["timings_ms"]["total_ms"])

    threads = [threading.Thread(target=work, args=(c, i)) for i, c in enumerate(pool)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {"clients": clients, "requests": len(latencies), "p50_ms": round(percentile(latencies, 50), 1),
            "p95_ms": round(percentile(latencies, 95), 1), "mean_ms": round(statistics.fmean(latencies), 1),
            "server_p50_ms": round(percentile(server_ms, 50), 1), "requests_per_s": round(len(latencies) / wall, 2)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=48, help="/predict calls per concurrency level")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8], help="concurrency levels")
    p.add_argument("--custom", help="model directory or Hub repo for the custom column (AGEGENDER_CUSTOM_REPO)")
    p.add_argument("--vgg16", help="model directory or Hub repo for the VGG16 column (AGEGENDER_VGG16_REPO)")
    p.add_argument("--vgg16-stand-in", action="store_true", help="an untrained VGG16 in the VGG16 column")
    p.add_argument("--client", choices=sorted(CLIENTS), default="http", help="how the load is sent (see above)")
    p.add_argument("--framework-floor", action="store_true", help="time a /predict that does nothing instead")
    args = p.parse_args(argv)

    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    tmp = tempfile.TemporaryDirectory()
    if args.custom:
        env["AGEGENDER_CUSTOM_REPO"] = args.custom
    if args.vgg16_stand_in:
        args.vgg16 = str(vgg16_stand_in(Path(tmp.name) / "vgg16"))
    if args.vgg16:
        env["AGEGENDER_VGG16_REPO"] = args.vgg16
    port = free_port()
    url = f"http://127.0.0.1:{port}/"

    load_before = [round(x, 2) for x in os.getloadavg()]  # other work on the machine skews every figure
    log = open(Path(tmp.name) / "app.log", "w+")  # the server's output, shown if it fails
    start = time.perf_counter()
    app_py = [str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port)]
    server = ["-c", NOOP_APP, str(port)] if args.framework_floor else app_py
    process = subprocess.Popen([sys.executable, *server], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            wait_until_served(url, process)
        except (RuntimeError, TimeoutError):
            log.seek(0)
            print(log.read()[-4000:], file=sys.stderr)
            raise
        served_s = time.perf_counter() - start
        first = CLIENTS[args.client](url).predict(EXAMPLES[0])
        first_answer_s = time.perf_counter() - start
        load(url, 2, 4, args.client)  # warm-up: the first uploads and events of each kind
        levels = [load(url, n, args.requests, args.client) for n in args.clients]
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
        tmp.cleanup()

    report = {"cold_start": {"page_served_s": round(served_s, 2), "first_predict_s": round(first_answer_s, 2)},
              "models": {k: v["source"] if v["available"] else "unavailable" for k, v in first["models"].items()},
              "client": args.client, "framework_floor": args.framework_floor, "levels": levels,
              "machine": f"{os.cpu_count()} CPU cores, {sys.platform}", "load_average_before": load_before}
    one = next((lv for lv in levels if lv["clients"] == 1), None)
    eight = next((lv for lv in levels if lv["clients"] == 8), None)
    if one and eight:
        report["p95_8_over_p50_1"] = round(eight["p95_ms"] / one["p50_ms"], 2)

    print(f"load average before the run (1, 5, 15 min): {load_before}")
    print(f"cold start: page served after {served_s:.1f} s, first /predict answered after {first_answer_s:.1f} s")
    print("models: " + "; ".join(f"{k}: {v}" for k, v in report["models"].items()))
    print("\n| clients | requests | p50 (ms) | p95 (ms) | mean (ms) | server p50 (ms) | requests/s |")
    print("|---|---|---|---|---|---|---|")
    for lv in levels:
        print(f"| {lv['clients']} | {lv['requests']} | {lv['p50_ms']} | {lv['p95_ms']} | {lv['mean_ms']} | "
              f"{lv['server_p50_ms']} | {lv['requests_per_s']} |")
    if "p95_8_over_p50_1" in report:
        ratio = report["p95_8_over_p50_1"]
        print(f"\n8-client p95 / 1-client p50 = {ratio} ({'within' if ratio <= 3 else 'over'} the 3x target)")
    print("\n" + json.dumps(report))
    return report


if __name__ == "__main__":
    main()
