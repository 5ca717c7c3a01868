"""The HTML report in a real browser: headless Chromium loads it under its own content policy,
decodes every embedded picture whole (the same pixels PIL reads) and draws a page that is not
blank. Skipped only where no Chromium is installed (`.ci/run` installs Debian's)."""

import io
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from dimctl.report.document import ReportOptions, build
from dimctl.report.inputs import collect
from dimctl.report.render import write

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
pytestmark = [pytest.mark.skipif(BROWSER is None, reason="no Chromium installed (apt-get install chromium)"),
              pytest.mark.filterwarnings("ignore::UserWarning")]

# Run after load: each picture as the browser decoded it, drawn to a canvas: its size and the sum of
# its RGB values (a truncated PNG still reports its size, but draws nothing past the cut).
CHECK = """<script>
window.addEventListener("load", () => {
  const seen = [...document.images].map(i => {
    const canvas = document.createElement("canvas");
    canvas.width = i.naturalWidth; canvas.height = i.naturalHeight;
    const context = canvas.getContext("2d");
    context.drawImage(i, 0, 0);
    const rgba = context.getImageData(0, 0, canvas.width, canvas.height).data;
    let sum = 0;
    for (let k = 0; k < rgba.length; k += 4) sum += rgba[k] + rgba[k + 1] + rgba[k + 2];
    return canvas.width + "x" + canvas.height + ":" + sum;
  });
  document.body.setAttribute("data-decoded", seen.join(" "));
});
</script>"""


def chromium(tmp_path, *args) -> subprocess.CompletedProcess:
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    return subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
                           "--virtual-time-budget=10000", *args], capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def report(made, tmp_path_factory):
    inputs = [*made.runs.values(), made.results, made.root / "mine-dim-l", made.root / "rec-dim-l", made.root / "nn-dim-l"]
    document = build(collect(inputs), ReportOptions(title="browser test"))
    (path,) = write(document, tmp_path_factory.mktemp("browser") / "report.html")
    return document, path


def test_every_picture_decodes_in_a_real_browser(report, tmp_path):
    document, path = report
    # A copy whose policy also lets the checking script run: images stay limited to data: URIs as in the report.
    html = path.read_text().replace("img-src data:;", "img-src data:; script-src 'unsafe-inline';")
    checked = tmp_path / "checked.html"
    checked.write_text(html.replace("</body>", CHECK + "\n</body>"))
    result = chromium(tmp_path, "--dump-dom", checked.as_uri())
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    found = re.search(r'data-decoded="([^"]*)"', result.stdout.decode())
    assert found, "the browser did not run the check (page not loaded?)"
    expected = []
    for picture in document.pictures:  # every picture is opaque: its canvas pixels are its RGB values
        rgb = Image.open(io.BytesIO(picture.png)).convert("RGB")
        expected.append(f"{rgb.width}x{rgb.height}:{np.asarray(rgb, dtype=np.int64).sum()}")
    assert found.group(1).split() == expected


def test_the_report_draws_a_page_that_is_not_blank(report, tmp_path):
    _, path = report
    shot = tmp_path / "shot.png"
    result = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,1600", path.as_uri())
    assert result.returncode == 0 and shot.is_file(), result.stderr.decode()[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (1600, 1200)
    inked = (pixels < 200).mean()  # text, table rules, curves and grids
    assert 0.02 < inked < 0.9, inked
