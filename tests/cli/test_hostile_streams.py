"""Closed and endless inputs: one line and exit 2/3, never a traceback, never memory without bound.
Real processes where the shell makes the input (a closed stdin, /dev/zero)."""

from tests.cli.helpers import DIMCTL, assert_one_line_error, run_here, sh


def test_closed_and_endless_stdin_are_refused(tmp_path):
    closed = sh(f"{' '.join(DIMCTL)} probe - <&-", tmp_path)
    assert_one_line_error(closed, 2)
    assert "stdin is closed" in closed.stderr.decode()
    endless = sh(f"{' '.join(DIMCTL)} probe - < /dev/zero", tmp_path)  # refused from its first bytes
    assert_one_line_error(endless, 3)
    assert "not a feature or sample stream" in endless.stderr.decode()


def test_config_files_are_read_with_a_bound(tmp_path):
    # /dev/zero is refused before it is opened (tests/cli/test_hostile_paths.py); a regular file is bounded.
    config = tmp_path / "big.toml"
    config.write_text("# padding\n" * 200_000)  # 2 MB of comments: valid TOML, but no settings file
    result = run_here("probe", "--config", config, tmp_path / "f.h5")
    assert_one_line_error(result, 2)
    assert "over 1 MB" in result.stderr.decode()


def test_a_stream_is_read_only_as_far_as_its_header_says(tmp_path):
    """Bytes after the stream's end (a producer that keeps writing) are not read; the stream is whole."""
    assert run_here("pretrain", "--dataset", "digits", "--epochs", "0", "--mi-units", "8", "--width", "0.25",
                    "--fc-dim", "32", "--out", tmp_path / "run").returncode == 0
    streamed = run_here("extract", tmp_path / "run" / "encoder.safetensors", "--layer", "y", "-o", "-").stdout
    result = run_here("probe", "-", "--classifier", "logreg", input=streamed + b"\0" * 100_000)
    assert result.returncode == 0, result.stderr.decode()
    truncated = run_here("probe", "-", input=streamed[:-5000])
    assert_one_line_error(truncated, 3)
    assert "truncated" in truncated.stderr.decode()
