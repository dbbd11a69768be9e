"""``advviz app [--port P] [--models-dir DIR]``: the Streamlit app on 127.0.0.1.

When the models root holds no checkpoint, the short default training (GloVe-LSTM on sst2-sent with
each registered method of baseline, spgd, freelb, carl, rar) runs first, one job per core as the
Models page starts it, with a progress bar per job on the terminal; ``--no-train`` skips it (the app
then offers it on Models).
"""

from __future__ import annotations

import errno
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from ..background import cancel, default_suite, start_parallel, status
from ..errors import AdvvizError
from ..registry import JOBS_DIR, MODELS_DIR_ENV, models_root, scan

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
        # Linux only (prctl): any failure leaves the child as it is
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


def check_port(host: str, port: int) -> None:
    """Refuse, in one line, an address Streamlit could not listen on (above all a port another
    program holds): Streamlit would report it after our URL line, in several lines of its own.

    Each address ``host`` resolves to is bound as Streamlit's server (tornado) binds it
    (SO_REUSEADDR, so a port left in TIME_WAIT passes; IPv6 sockets IPv6-only) and the probe socket
    is closed at once, before Streamlit starts. Another program can still take the port in the
    moment between this check and Streamlit's bind; :func:`cmd_app` checks right before starting it."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        raise AdvvizError(f"--host {host}: not an address this machine can listen on "
                          f"({getattr(e, 'strerror', None) or e})") from None
    for family, kind, proto, _, address in dict.fromkeys(addresses):
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                s.bind(address)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise AdvvizError(f"--port {port} is in use on {host} by another program "
                                      f"(an app already running?); give another --port") from None
                if not (family == socket.AF_INET6 and e.errno == errno.EADDRNOTAVAIL):  # no IPv6 here: tornado skips it too
                    raise AdvvizError(f"cannot listen on {host} port {port}: {e.strerror or e}") from None


def train_default_suite(root: Path) -> None:
    """Train the default set before the app opens, exactly as the Models page's button does: one
    background job per core (``background.start_parallel``: the runs split by their measured cost),
    each job's progress as a bar on this terminal. Ctrl-C or SIGTERM stops the jobs, each saving its
    resume state; the next ``advviz app`` continues them where they stopped."""
    suite = default_suite(root)
    jobs = start_parallel(root, suite)
    groups = [status(root, j)["names"] for j in jobs]  # as start_parallel split them
    print(f"no checkpoint under {root}: training the default models first, {len(groups)} at a time "
          f"({'; '.join(', '.join(g) for g in groups)}); a few minutes on CPU", file=sys.stderr)
    bars = [tqdm(total=1, position=i, desc="starting", unit="step", file=sys.stderr, dynamic_ncols=True)
            for i in range(len(jobs))]
    old = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while True:
            states = [status(root, j) for j in jobs]
            for bar, st in zip(bars, states):
                bar.set_description(f"[{min(st['done'] + 1, st['n'])}/{st['n']}] {st['current']}")
                bar.total = max(st["total"], 1)
                bar.n = st["step"] if st["state"] == "running" or st["total"] else bar.n
                if st["dev_accuracy"] is not None:
                    bar.set_postfix(dev=f"{st['dev_accuracy']:.3f}", refresh=False)
                bar.refresh()
            if all(st["state"] != "running" for st in states):
                break
            time.sleep(1.0)
    except KeyboardInterrupt:
        for j in jobs:
            cancel(root, j)
        raise AdvvizError("default training stopped; each run saved its state: `advviz app` continues it "
                          "(or `advviz app --no-train` opens the app now)") from None
    finally:
        signal.signal(signal.SIGTERM, old)
        for bar in bars:
            bar.close()
    failed = [st for st in states if st["state"] != "done"]
    if failed:
        st = failed[0]
        last = st["log_tail"].splitlines()[-1] if st["log_tail"] else f"exit {st['rc']}"
        raise AdvvizError(f"default training of {st['current']} failed ({last}); its log is "
                          f"{models_root(root) / JOBS_DIR / st['id'] / 'train.log'}; the app can still be opened "
                          f"with --no-train")


def cmd_app(args) -> int:
    if not (1 <= args.port <= 65535):
        raise AdvvizError(f"--port must be in 1..65535, got {args.port}")
    check_port(args.host, args.port)  # before minutes of default training, and again before Streamlit
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
    check_port(args.host, args.port)
    print(f"advviz app: http://{args.host}:{args.port}  (models root {root})", file=sys.stderr)
    rc = run_child(cmd, env)
    return 0 if rc in (0, 128 + signal.SIGINT, 128 + signal.SIGTERM) else rc
