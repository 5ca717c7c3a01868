"""Where one DIM(L) training step spends its time, by operator (torch.profiler), in fp32 and bf16.

    python benchmarks/profile_step.py                              # batch 64, mi-units 2048, fp32 and bf16
    python benchmarks/profile_step.py --mi-units 256 --precisions bf16 --top 25
    python benchmarks/profile_step.py --channels-last
    python benchmarks/profile_step.py --precisions bf16 --mi-units 256 --by-shape 15   # which tensors the rest is
    PYTHONPATH=<worktree of an older commit> python benchmarks/profile_step.py --csv F   # that commit's step

Runs dimctl's own step (train/pretrain.py's ``step_losses``, backward and Adam, through Accelerate's
autocast exactly as `dimctl pretrain` does) on digits at the paper's settings (DCGAN, DIM(L),
JSD, prior on), warms up, then profiles --steps steps and prints the operators with the most
self CPU time, how much of the step went to dtype conversions (``aten::copy_``/``aten::to``), and
the step split into matrix products (mm, addmm, bmm, convolutions forward and backward) and
everything else, in ms per step. With AMX the products are cheap and the rest is what is left to
shrink; ``--csv FILE`` keeps the split as data with the machine, torch version and commit.
"""

import argparse
import csv
import datetime
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from dimctl.allocator import keep_freed_memory
from dimctl.data.registry import load_dataset
from dimctl.data.transforms import normalise
from dimctl.train.config import PretrainConfig
from dimctl.train.pretrain import make_accelerator, prepare_models, step_losses

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/machine.py, also when loaded by path
from machine import append_rows, between_markers, machine, running_commit  # noqa: E402

# Operators whose self time is a matrix product: dense layers and the 1×1 "convs" (mm, addmm, bmm)
# and the convolutions with their gradients (oneDNN's or the fallback's, whichever runs).
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm", "aten::mkldnn_convolution",
              "aten::convolution_backward", "aten::_slow_conv2d_forward", "aten::_slow_conv2d_backward",
              "aten::mkldnn_matmul", "aten::_mkldnn_convolution")
FIELDS = ["precision", "mi_units", "batch_size", "channels_last", "ms_per_step", "images_per_s", "matmul_ms",
          "other_ms", "matmul_share", "machine", "cpu_flags", "torch", "commit", "date"]


RESULTS = Path(__file__).resolve().parents[1] / "results" / "profile_step.csv"
DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
BEGIN, END = "<!-- step split: made by benchmarks/profile_step.py --render -->", "<!-- end of step split -->"


def render(results: Path = RESULTS, doc: Path = DOC) -> str:
    """``doc`` with the table between its markers made anew from ``results``: per machine and day, the
    median over runs of each (precision, units, commit), and each commit's non-matmul time ÷ the
    first commit's: the median over its runs of the ratio to the first commit's run just before it
    in the CSV (alternating runs, older code first), so each ratio is taken within one round. A day
    is its own table: a VM's speed moves between sessions, and within one by tens of percent."""
    rows = list(csv.DictReader(open(results)))
    lines = [BEGIN, ""]
    where = ("machine", "cpu_flags", "torch", "date")
    for place in dict.fromkeys(tuple(r[k] for k in where) for r in rows):
        here = [r for r in rows if tuple(r[k] for k in where) == place]
        lines += [f"**{place[0]}** (flags: {place[1] or 'none listed'}), torch {place[2]}, batch "
                  f"{here[0]['batch_size']}, {place[3]}; median of the runs:", "",
                  "| precision | units | commit | runs | ms/step | products ms | other ms | other ÷ first commit's, per round |",
                  "|---|---|---|---|---|---|---|---|"]
        for setting in dict.fromkeys((r["precision"], r["mi_units"], r["channels_last"]) for r in here):
            same = [r for r in here if (r["precision"], r["mi_units"], r["channels_last"]) == setting]
            first_commit, last_first, ratios = same[0]["commit"], None, {}
            for r in same:  # each run against the first commit's run just before it: one round's ratio
                if r["commit"] == first_commit:
                    last_first = r
                elif last_first is not None:
                    ratios.setdefault(r["commit"], []).append(float(r["other_ms"]) / float(last_first["other_ms"]))
            for commit in dict.fromkeys(r["commit"] for r in same):
                runs = [r for r in same if r["commit"] == commit]
                med = {k: statistics.median(float(r[k]) for r in runs) for k in ("ms_per_step", "matmul_ms", "other_ms")}
                ratio = statistics.median(ratios[commit]) if commit in ratios else 1.0
                label = setting[0] + (" channels-last" if setting[2] == "True" else "")
                lines.append(f"| {label} | {setting[1]} | {commit} | {len(runs)} | {med['ms_per_step']:.1f} | "
                             f"{med['matmul_ms']:.1f} | {med['other_ms']:.1f} | {ratio:.2f} |")
        lines.append("")
    lines.append(END)
    return between_markers(doc.read_text(), BEGIN, END, lines)


def split(events, steps: int) -> tuple[float, float]:
    """(matrix-product ms, everything-else ms) per step, from the profiler's self CPU times."""
    total = sum(e.self_cpu_time_total for e in events)
    products = sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS)
    return products / steps / 1000, (total - products) / steps / 1000  # µs → ms


def page_faults() -> int:
    """Page faults this process has taken so far (each first touch of a fresh page of memory)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def by_shape(prof, steps: int, top: int) -> str:
    """The ``top`` costliest operators other than matrix products, one line per (operator, input
    shapes), in ms per step: e.g. the cast of one weight forward and its gradient's cast back."""
    shaped = [e for e in prof.key_averages(group_by_input_shape=True) if e.key not in MATMUL_OPS and e.self_cpu_time_total]
    shaped.sort(key=lambda e: -e.self_cpu_time_total)
    lines = ["not matrix products, by input shape (ms/step, calls/step):"]
    for e in shaped[:top]:
        shapes = ", ".join(str(tuple(s)) for s in e.input_shapes if s)
        lines.append(f"  {e.self_cpu_time_total / steps / 1000:7.2f} {e.count / steps:5.1f}  {e.key}  {shapes}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--mi-units", type=int, default=2048)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--by-shape", type=int, default=0, metavar="N",
                        help="also list the N costliest operators that are not matrix products, per input shape "
                             "(which tensor's dtype copy, normalisation or ReLU it is)")
    parser.add_argument("--csv", type=Path, help="write the split per precision to this CSV (results/...)")
    parser.add_argument("--render", action="store_true", help="only write docs/benchmarks.md's table from "
                        "results/profile_step.csv")
    args = parser.parse_args(argv)
    if args.render:
        DOC.write_text(render())
        return []
    name, flags = machine()
    commit = running_commit()
    rows = []
    keep_freed_memory()  # as `dimctl` does at start-up (dimctl/allocator.py)

    data = load_dataset("digits")
    images = normalise(data.train_images[:args.batch_size])
    for precision in args.precisions.split(","):
        config = PretrainConfig.of(dataset="digits", mi_units=args.mi_units, batch_size=args.batch_size, cpu=True,
                                precision=precision, channels_last=args.channels_last, checkpoint_every=0).resolved()
        accelerator = make_accelerator(config)
        _, model, disc, optimiser = prepare_models(config, accelerator, data.channels, data.image_size)
        x = images.contiguous(memory_format=torch.channels_last if args.channels_last else torch.contiguous_format)

        def step():
            loss = step_losses(model, disc, x, config, accelerator).total
            optimiser.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimiser.step()

        for _ in range(3):
            step()
        start, faults = time.perf_counter(), page_faults()
        for _ in range(args.steps):
            step()
        seconds = (time.perf_counter() - start) / args.steps
        faults = (page_faults() - faults) / args.steps
        with profile(activities=[ProfilerActivity.CPU], record_shapes=bool(args.by_shape)) as prof:
            for _ in range(args.steps):
                step()
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        converts = sum(e.self_cpu_time_total for e in events if e.key in ("aten::copy_", "aten::to", "aten::_to_copy"))
        print(f"\n== {precision}, batch {args.batch_size}, mi-units {args.mi_units}"
              f"{', channels-last' if args.channels_last else ''}: {seconds * 1000:.1f} ms/step "
              f"({args.batch_size / seconds:.1f} img/s unprofiled, {faults:.0f} page faults a step); dtype copies "
              f"{converts / total:.1%} of self time")
        products, other = split(events, args.steps)
        print(f"matrix products {products:.1f} ms/step ({products / (products + other):.1%}), everything else "
              f"{other:.1f} ms/step ({other / (products + other):.1%}) of profiled self time")
        print(events.table(sort_by="self_cpu_time_total", row_limit=args.top, max_name_column_width=40))
        if args.by_shape:
            print(by_shape(prof, args.steps, args.by_shape))
        rows.append({"precision": precision, "mi_units": args.mi_units, "batch_size": args.batch_size,
                     "channels_last": args.channels_last, "ms_per_step": round(seconds * 1000, 2),
                     "images_per_s": round(args.batch_size / seconds, 1), "matmul_ms": round(products, 2),
                     "other_ms": round(other, 2), "matmul_share": round(products / (products + other), 4),
                     "machine": name, "cpu_flags": flags, "torch": torch.__version__, "commit": commit,
                     "date": datetime.date.today().isoformat()})
        # Accelerate's mixed-precision setting is process-wide; reset it for the next precision.
        from accelerate.state import AcceleratorState, GradientState
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    if args.csv:
        append_rows(args.csv, FIELDS, rows)
    return rows


if __name__ == "__main__":
    main()
