"""Executes every notebook under experiments/ top to bottom with this interpreter's kernel.

A notebook that raises (including its own asserts) fails the test. Figures are written to
a temporary folder through VISD_NOTEBOOK_OUT, never into the repository.
"""
import json
import os
import pathlib
import sys

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"
NOTEBOOKS = sorted(EXPERIMENTS.rglob("*.ipynb"))
NOTEBOOKS = [p for p in NOTEBOOKS if ".ipynb_checkpoints" not in p.parts]


def test_notebooks_are_found():
    assert NOTEBOOKS, f"no notebooks under {EXPERIMENTS}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(EXPERIMENTS)))
def test_notebook_executes(path, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("VISD_NOTEBOOK_OUT", str(out))
    # A kernelspec pinned to this interpreter, first on JUPYTER_PATH: a user-level
    # "python3" kernel pointing at another Python can never be picked up instead.
    spec_dir = tmp_path / "jupyter" / "kernels" / "visd-venv"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "visd-jax venv", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(EXPERIMENTS.parent)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="visd-venv",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    pngs = list(out.glob("*.png"))
    if path.name == "losses_demo.ipynb":
        assert [p.name for p in pngs] == ["losses_demo_curve.png"] and pngs[0].stat().st_size > 1000
