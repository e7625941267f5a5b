"""Driving JupyterLab in headless Chromium for the browser tests (tests/test_jupyterlab.py).

:func:`jupyterlab` runs a JupyterLab server on a free port of 127.0.0.1 with a token, its kernels in smoke mode,
and stops it and its kernels on exit. :func:`run_all` opens a notebook, runs all cells from the Run menu, waits
for the kernel to go idle, saves it, and returns a :class:`Report` of what the learner would see; :func:`check`
turns a report into one assertion that names every failing cell.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import psutil

CHROMIUM_HINT = ("JupyterLab browser tests skipped: no Chromium found; install the OS's package "
                 "(`apt-get install chromium` on Debian/Ubuntu) or set MINICFG_CHROMIUM to a Chromium binary")
#: JupyterLab settings for a test run: every cell kept in the page, no autosave, no news or update checks.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}


def find_chromium() -> str | None:
    """The Chromium to drive: ``$MINICFG_CHROMIUM``, else the OS's ``chromium`` or ``chromium-browser``."""
    given = os.environ.get("MINICFG_CHROMIUM")
    if given:
        return given if Path(given).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    """A running JupyterLab server."""

    url: str
    token: str
    root: Path
    process: subprocess.Popen
    log: Path

    def api(self, path: str, method: str = "GET"):
        request = urllib.request.Request(f"{self.url}/api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def stop_kernels(self) -> None:
        """Shut down every kernel of the server (through its API), so that notebooks run one after another do not
        keep their kernels' memory. A server that no longer answers is left to :func:`jupyterlab`'s exit, which
        kills it and its kernels, so that this clean-up never hides the failure that came before it."""
        try:
            for session in self.api("sessions"):
                self.api(f"sessions/{session['id']}", method="DELETE")
            for kernel in self.api("kernels"):
                self.api(f"kernels/{kernel['id']}", method="DELETE")
        except OSError:
            pass

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


def _stop(lab: Lab, timeout: float = 20.0) -> None:
    """Shut the server down through its API (it stops its kernels), then kill whatever is left of it."""
    try:
        procs = [psutil.Process(lab.process.pid), *psutil.Process(lab.process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        procs = []
    try:
        lab.api("shutdown", method="POST")
        lab.process.wait(timeout)
    except Exception:  # noqa: BLE001 - any failure to shut down cleanly ends in the kill below
        pass
    if lab.process.poll() is None:
        os.killpg(lab.process.pid, signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=5)
    for p in alive:
        p.kill()
    _, alive = psutil.wait_procs(alive, timeout=5)
    if alive:
        raise RuntimeError(f"JupyterLab processes still running after kill: {[p.pid for p in alive]}")


@contextmanager
def jupyterlab(root: Path, workdir: Path, startup_timeout: float = 90.0):
    """JupyterLab serving ``root`` on a free port of 127.0.0.1 with a token; kernels get ``MINICFG_SMOKE=1`` and
    ``MINICFG_DATA`` as set here. Settings, workspaces and runtime files live in ``workdir``. On exit the server
    and every kernel it started are stopped, also when the body failed."""
    token = os.urandom(16).hex()
    port = _free_port()
    settings = workdir / "settings"
    for plugin, values in LAB_SETTINGS.items():
        path = settings / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = dict(os.environ, MINICFG_SMOKE="1", JUPYTERLAB_SETTINGS_DIR=str(settings),
               JUPYTERLAB_WORKSPACES_DIR=str(workdir / "workspaces"), JUPYTER_RUNTIME_DIR=str(workdir / "runtime"),
               JUPYTER_CONFIG_DIR=str(workdir / "config"))
    env.pop("MPLBACKEND", None)  # a learner's kernel draws inline; pytest's Agg would hide every plt.show()
    log = workdir / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"]
    if os.geteuid() == 0:  # CI containers run as root; the server listens on 127.0.0.1 with a token only
        cmd.append("--allow-root")
    with open(log, "wb") as out:
        process = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    lab = Lab(f"http://127.0.0.1:{port}", token, root, process, log)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with code {process.returncode}:\n{lab.log_tail()}")
            try:
                lab.api("status")
                break
            except OSError as err:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not answer within {startup_timeout:.0f} s:\n{lab.log_tail()}") \
                        from err
                time.sleep(0.5)
        yield lab
    finally:
        _stop(lab)


def copy_for_lab(notebook: Path, folder: Path, broken_cell_at: int | None = None) -> Path:
    """A copy of ``notebook`` in ``folder`` without outputs (so everything seen later comes from this run);
    with ``broken_cell_at``, a cell that raises is inserted at that index."""
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    if broken_cell_at is not None:
        nb.cells.insert(broken_cell_at, nbformat.v4.new_code_cell('raise RuntimeError("a deliberately broken cell")'))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / notebook.name
    nbformat.write(nb, path)
    return path


@dataclass
class Report:
    """What one run of all cells left: the saved notebook, the images seen in the page, the time taken."""

    name: str
    notebook: nbformat.NotebookNode
    images_shown: int
    images_broken: int
    seconds: float
    problems: list[str] = field(default_factory=list)


def _first_line(cell) -> str:
    line = next((ln for ln in cell.source.splitlines() if ln.strip() and not ln.startswith("#")), "")
    return line if len(line) <= 70 else line[:67] + "..."


def _menu(page, top: str, item: str) -> None:
    """Click menu ``top`` of the menu bar, then its item labelled exactly ``item``."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{re.escape(top)}$")).click()
    label = page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$"))
    label.locator("xpath=..").and_(page.locator(".lm-Menu-item:not(.lm-mod-disabled)")).click()


def _wait_for_kernel(lab: Lab, rel: str, timeout_s: float = 60.0) -> None:
    """Wait until the server has an idle kernel for the notebook at ``rel``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(s["path"] == rel and s["kernel"] and s["kernel"]["execution_state"] == "idle"
               for s in lab.api("sessions")):
            return
        time.sleep(0.25)
    raise AssertionError(f"no idle kernel for {rel} within {timeout_s:.0f} s: {lab.api('sessions')}")


def run_all(page, lab: Lab, path: Path, timeout_s: float = 300.0) -> Report:
    """Open ``path`` (inside ``lab.root``) in JupyterLab, run all cells from the Run menu, wait until the kernel
    is idle with no cell queued, save from the File menu, and report on the saved notebook and the page."""
    start = time.monotonic()
    rel = path.relative_to(lab.root).as_posix()
    page.goto(f"{lab.url}/lab/tree/{rel}?token={lab.token}&reset")
    page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=60_000)
    _wait_for_kernel(lab, rel)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
    _menu(page, "Run", "Run All Cells")
    try:
        page.wait_for_function(
            """() => {
                const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]
                    .map(p => p.textContent);
                const idle = document.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status === 'idle';
                return idle && prompts.some(t => /\\d/.test(t)) && !prompts.some(t => t.includes('*'));
            }""", timeout=timeout_s * 1000, polling=250)
    except Exception as err:
        prompts = page.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt").all_inner_texts()
        dialogs = page.locator(".jp-Dialog").all_inner_texts()
        raise AssertionError(f"{path.name}: the cells did not finish within {timeout_s:.0f} s; prompts {prompts}, "
                             f"dialogs {dialogs}, kernels {lab.api('sessions')}:\n{lab.log_tail()}") from err
    _menu(page, "File", "Save Notebook")
    page.wait_for_function("() => !document.querySelector('.lm-TabBar-tab.jp-mod-current.jp-mod-dirty')",
                           timeout=30_000)
    images = page.evaluate("""() => [...document.querySelectorAll('.jp-Notebook .jp-OutputArea-output img')]
                                     .map(img => img.complete && img.naturalWidth > 0)""")
    seconds = time.monotonic() - start
    return Report(path.name, nbformat.read(path, as_version=4), sum(images), len(images) - sum(images), seconds)


def check(report: Report) -> None:
    """Assert that every code cell ran without an error and that every figure was drawn as an image; the message
    names each failing cell by its index in the notebook and its first line of code."""
    problems = []
    cells = report.notebook.cells
    not_run = []
    for i, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.outputs if o.output_type == "error"]
        for err in errors:
            problems.append(f"cell {i} (`{_first_line(cell)}`) shows an error: {err.ename}: {err.evalue}")
        if cell.execution_count is None and not errors:
            not_run.append(str(i))
    if not_run:
        problems.append(f"cells {', '.join(not_run)} did not run (JupyterLab stops at the first error)")
    pngs = sum("image/png" in o.get("data", {}) for c in cells if c.cell_type == "code" for o in c.outputs)
    if report.images_broken:
        problems.append(f"{report.images_broken} image(s) in the page did not load")
    if report.images_shown < pngs or report.images_shown == 0:
        problems.append(f"the page shows {report.images_shown} images for the notebook's {pngs} figures")
    report.problems = problems
    assert not problems, f"{report.name} in JupyterLab:\n  " + "\n  ".join(problems)
