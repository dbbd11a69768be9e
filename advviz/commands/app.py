"""``advviz app [--port P] [--models-dir DIR]``: the Streamlit app on 127.0.0.1.

When the models root holds no checkpoint, the short default training (GloVe-LSTM on sst2-sent with
each registered method of baseline, spgd, freelb, carl, rar) runs first, in the foreground, with
its progress bars on the terminal; ``--no-train`` skips it (the app then offers it on Models).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

from ..errors import AdvvizError

CHECKOUT = Path(__file__).resolve().parents[2]  # the source tree, when advviz runs from one


def app_file() -> Path:
    """The Streamlit entry file: ``app/streamlit_app.py`` of the checkout advviz runs from (a source
    tree: pyproject.toml beside app/), else the one the wheel installed as the package ``advviz_app``.
    One line when neither is there (an install that left the app out)."""
    here = CHECKOUT / "app" / "streamlit_app.py"
    if (CHECKOUT / "pyproject.toml").is_file() and here.is_file():
        return here
    spec = importlib.util.find_spec("advviz_app")
    for loc in (spec.submodule_search_locations or []) if spec is not None else []:
        if (Path(loc) / "streamlit_app.py").is_file():
            return Path(loc) / "streamlit_app.py"
    raise AdvvizError("the advviz app is not installed (no advviz_app package beside advviz, no app/ in a "
                      "checkout); reinstall advviz: pip install --force-reinstall advviz")


def add_parsers(sub, eval_parser, argv: list[str]) -> None:
    p = sub.add_parser("app", help="open the Streamlit app (trains the default models first if there are none)")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--models-dir", default=None, help="models root (env ADVVIZ_MODELS_DIR; default models/)")
    p.add_argument("--no-train", action="store_true", help="do not run the default training when there is no model")
    p.add_argument("--max-upload-mb", type=int, default=5, help="largest file a user may upload")
    p.set_defaults(func=cmd_app)


def _die_with_parent(parent: int) -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the line above took effect
        os.kill(os.getpid(), signal.SIGTERM)


def run_child(cmd: list[str], env: dict | None = None) -> int:
    """Run ``cmd`` in the foreground so that it never outlives this process: SIGINT, SIGTERM and
    SIGHUP are forwarded to it, and on Linux the kernel sends it SIGTERM when this process dies
    (PR_SET_PDEATHSIG), e.g. by SIGKILL. Returns its exit code (128 + N for signal N)."""
    preexec = None
    if sys.platform.startswith("linux"):
        parent = os.getpid()
        preexec = lambda: _die_with_parent(parent)  # noqa: E731
    proc = subprocess.Popen(cmd, env=env, preexec_fn=preexec)

    def forward(signum, frame):
        try:
            proc.send_signal(signum)
        except (ProcessLookupError, OSError):
            pass

    sigs = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    old = {sig: signal.signal(sig, forward) for sig in sigs}
    try:
        rc = proc.wait()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if proc.poll() is None:  # an exception in this process: do not leave the child behind
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return rc if rc >= 0 else 128 - rc


def train_default_suite(root: Path) -> None:
    """Run the default training, one method after another, progress bars on this terminal."""
    from ..background import default_suite, resumable
    from ..registry import resolve

    suite = default_suite(root)
    print(f"no checkpoint under {root}: training the default models first "
          f"({', '.join(r.name for r in suite)}); this takes a few minutes on CPU", file=sys.stderr)
    for i, run in enumerate(suite, 1):
        print(f"[{i}/{len(suite)}] {run.name}", file=sys.stderr)
        resume = ["--resume"] if resumable(resolve(root, run.name)) else []
        rc = run_child([sys.executable, "-m", "advviz", *run.argv(root), *resume])
        if rc != 0:
            raise AdvvizError(f"default training of {run.name} failed (exit {rc}); the app can still be opened "
                              f"with --no-train")


def cmd_app(args) -> int:
    from ..registry import MODELS_DIR_ENV, models_root, scan

    if not (1 <= args.port <= 65535):
        raise AdvvizError(f"--port must be in 1..65535, got {args.port}")
    entry = app_file()
    root = models_root(args.models_dir)
    if os.path.lexists(root) and not root.is_dir():
        raise AdvvizError(f"--models-dir {root} is not a directory; give a folder (it is created if missing)")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AdvvizError(f"--models-dir {root}: cannot create it ({e.strerror or e})") from None
    if not any(r["status"] == "ok" for r in scan(root)) and not args.no_train:
        train_default_suite(root)
    env = {**os.environ, MODELS_DIR_ENV: str(root)}
    cmd = [sys.executable, "-m", "streamlit", "run", str(entry), "--server.address", args.host,
           "--server.port", str(args.port), "--server.headless", "true",
           "--server.maxUploadSize", str(args.max_upload_mb), "--browser.gatherUsageStats", "false",
           "--client.toolbarMode", "minimal"]
    print(f"advviz app: http://{args.host}:{args.port}  (models root {root})", file=sys.stderr)
    rc = run_child(cmd, env)
    return 0 if rc in (0, 128 + signal.SIGINT, 128 + signal.SIGTERM) else rc
