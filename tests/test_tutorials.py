"""Execute every tutorial notebook (tutorials/*.ipynb) headless; any cell error fails the test.

The notebooks are committed without outputs and are run here with nbclient from the tutorials/
directory, writing their products under pytest's tmp_path (``TSOREDUCE_TUTORIAL_DIR``): nothing is
left in /tmp.  Each is sized to run in about a minute on 2 cores and ends with a cell asserting its
key result.  Notebooks that need ../shared/data are skipped with a reason when it is absent.
"""

import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

TUTORIALS = Path(__file__).parents[1] / "tutorials"
DATA = Path(__file__).parents[1].parent / "shared" / "data"
NEEDS_DATA = {"03_fitting_real_lightcurves.ipynb"}
WRITES_PRODUCTS = {"01_quickstart.ipynb", "03_fitting_real_lightcurves.ipynb", "04_mrs_cubes.ipynb"}
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))


def test_notebooks_exist():
    names = {p.name for p in NOTEBOOKS}
    assert {"01_quickstart.ipynb", "02_miri_lrs_in_depth.ipynb",
            "03_fitting_real_lightcurves.ipynb"} <= names


def test_each_notebook_ends_by_checking_its_key_result():
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        last = [c for c in nb.cells if c.cell_type == "code"][-1]
        assert "\nassert " in "\n" + last.source, f"{path.name}: the last code cell asserts nothing"


def test_notebooks_write_where_they_are_told():
    for path in NOTEBOOKS:
        text = path.read_text()
        assert "TSOREDUCE_TUTORIAL_DIR" in text, f"{path.name} ignores TSOREDUCE_TUTORIAL_DIR"


def test_committed_without_outputs():
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.get("outputs"), f"{path.name}: commit notebooks without outputs"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, monkeypatch):
    if path.name in NEEDS_DATA and not DATA.is_dir():
        pytest.skip(f"{path.name} needs the real data in {DATA} (../shared/data), which is absent")
    monkeypatch.setenv("TSOREDUCE_TUTORIAL_DIR", str(tmp_path / "products"))  # the kernel inherits it
    # the kernel's temporary directory is one of ours, so anything a notebook leaves in "/tmp" shows
    # (comparing the real /tmp before and after would count other processes' files)
    kernel_tmp = tmp_path / "tmp"
    kernel_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(kernel_tmp))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(TUTORIALS)}})
    t0 = time.perf_counter()
    client.execute()  # raises CellExecutionError naming the failing cell
    print(f"{path.name}: executed in {time.perf_counter() - t0:.1f} s")
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    print("".join(o.get("text", "") for o in last.get("outputs", [])).strip())
    if path.name in WRITES_PRODUCTS:
        assert any((tmp_path / "products").iterdir()), "the products did not go where they were told"
    left = sorted(p.name for p in kernel_tmp.iterdir())
    assert left == [], f"the notebook left {left} in its temporary directory"
