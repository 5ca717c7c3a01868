"""docs/budget_plot.py redraws the budget plot (docs/evidence.md, the README) from recorded results:
its table holds the evidence page's numbers, the README's headline rows are among them, and it
turns them into the report's plot input."""

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "docs" / "budget-fashion-mnist.tsv"
PROBES = ["conv svm", "conv mlp", "fc svm", "fc mlp", "y svm", "y mlp"]
MEAN_STD = re.compile(r"(\d+\.\d+) ± (\d+\.\d+)")


def budget_plot():
    spec = importlib.util.spec_from_file_location("budget_plot", ROOT / "docs" / "budget_plot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def page_means(page: Path) -> dict[tuple[str, int, str], tuple[float, float]]:
    """Every table row of a page whose six probe cells are all 'mean ± std': (objective, epochs, probe)."""
    found = {}
    for line in page.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 8 or not cells[1].isdigit():
            continue
        values = [MEAN_STD.match(c) for c in cells[-6:]]
        if all(values):
            for probe, m in zip(PROBES, values):
                found[(cells[0], int(cells[1]), probe)] = (float(m[1]), float(m[2]))
    return found


def test_the_recorded_table_is_the_evidence_page_s_numbers():
    lines = TABLE.read_text().splitlines()
    assert lines[0].split("\t") == ["objective", "epochs", "probe", "mean", "std", "n"]
    recorded = {}
    for line in lines[1:]:
        objective, epochs, probe, mean, std, _ = line.split("\t")
        recorded[(objective, int(epochs), probe)] = (float(mean), float(std))
    assert recorded == page_means(ROOT / "docs" / "evidence.md")
    headline = page_means(ROOT / "README.md")
    assert len(headline) == 6 * 6 and headline.items() <= recorded.items()


def test_panels_are_per_probe_curves_in_epoch_order_over_the_floor(tmp_path):
    tsv = tmp_path / "t.tsv"
    tsv.write_text("objective\tepochs\tprobe\tmean\tstd\tn\n"
                   "random init\t0\ty svm\t70.0\t0.5\t3\n"
                   "DIM(L) JSD\t5\ty svm\t80.0\t0.2\t3\n"
                   "AE\t1\ty svm\t75.0\t0.1\t3\n"
                   "DIM(L) JSD\t1\ty svm\t78.0\t0.3\t3\n")
    panels = budget_plot().read_panels(tsv)
    assert panels == {"y svm": ({"AE": [(1, 75.0, 0.1)], "DIM(L) JSD": [(1, 78.0, 0.3), (5, 80.0, 0.2)]},
                                [70.0])}
    budget_plot().main(str(tsv), str(tmp_path / "t.png"))
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
