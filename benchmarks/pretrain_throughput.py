"""Throughput of `dimctl pretrain` against a bare model step, and against the machine's matmul speed.

    python benchmarks/pretrain_throughput.py                    # fp32 (and bf16 where fast) × batch 64,256 × mi-units 256,2048
    python benchmarks/pretrain_throughput.py --precisions bf16 --batch-sizes 64 --mi-units 2048 --images 1500
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 python benchmarks/pretrain_throughput.py
    PYTHONPATH=<worktree of an older commit> python benchmarks/pretrain_throughput.py --csv F   # that commit's

For every (precision, batch size, --mi-units) on the same data (digits, DIM(L), JSD, prior on),
seed and batches:
  bare      plain PyTorch: the DIM step (forward under autocast for bf16, MI + prior losses,
            backward, fused Adam), nothing else;
  loop      dimctl's training loop called in-process (Accelerate, checks, metrics, checkpoint, artifact);
  loop-cl   the same with --channels-last;
  steady    with --compile-rows: the loop's steady state, eager and with --compile (the median of
            metrics.jsonl's images/s windows after the first --warmup-steps, so compilation is
            left out; benchmarks/compile_throughput.py gives the break-even).
It prints images/s, loop/bare (target ≥ 0.9 on CPU), the FLOPs of one step per image (counted by
torch's FlopCounterMode, forward + backward), and the loop's achieved FLOP/s ÷ the peak of the
precision it runs in: a large matmul in fp32, bf16 (and fp16 where the CPU has native fp16),
all measured in the same run. bf16 rows also give bf16 loop ÷ fp32 loop (``--csv FILE`` appends the
rows as data, with the machine, torch version and the commit of the dimctl that ran). Then the whole command
(`dimctl pretrain` as a user runs it, start-up included), with and without tcmalloc when Debian's
libtcmalloc-minimal4 is installed. Each timing is the best of --repeats, alternating.
"""

import argparse
import csv
import datetime
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from dimctl.allocator import keep_freed_memory
from dimctl.data.registry import load_dataset
from dimctl.data.transforms import normalise
from dimctl.objectives import prior
from dimctl.train.config import PretrainConfig
from dimctl.data.order import epoch_order
from dimctl.train.pretrain import build_models, pretrain

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/machine.py, also when loaded by path
from compile_throughput import run as steady_run  # noqa: E402
from machine import append_rows, between_markers, machine, running_commit  # noqa: E402

TCMALLOC = Path("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4")
FIELDS = ["precision", "batch_size", "mi_units", "bare_img_s", "loop_img_s", "loop_cl_img_s", "gflop_per_image",
          "loop_gflop_s", "of_peak", "vs_fp32_loop", "peak_gflop_s", "images", "repeats", "allocator", "machine",
          "cpu_flags", "torch", "commit", "date", "steady_eager_img_s", "steady_compiled_img_s", "compiled_wall_s",
          "eager_wall_s"]


RESULTS = Path(__file__).resolve().parents[1] / "results" / "pretrain_throughput.csv"
DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
BEGIN, END = "<!-- throughput: made by benchmarks/pretrain_throughput.py --render -->", "<!-- end of throughput -->"


def render(results: Path = RESULTS, doc: Path = DOC) -> str:
    """``doc`` with the table between its markers made anew from ``results``: per machine, the median
    over runs of each (commit, precision, batch, units); every ratio is taken within its own run
    first (the machine's speed moves by tens of percent between runs), then the median of those."""
    rows = list(csv.DictReader(open(results)))
    lines = [BEGIN, ""]
    for place in dict.fromkeys((r["machine"], r["cpu_flags"], r["torch"], r["allocator"]) for r in rows):
        here = [r for r in rows if (r["machine"], r["cpu_flags"], r["torch"], r["allocator"]) == place]
        lines += [f"**{place[0]}** (flags: {place[1] or 'none listed'}), torch {place[2]}, {place[3]} allocator, "
                  f"{', '.join(sorted({r['date'] for r in here}))}; {here[0]['images']}+ images a measurement, best of "
                  f"{here[0]['repeats']} in a run; the median of the runs. The peak is a 2048³ matmul's in the row's "
                  "precision, measured in each run:", "",
                  "| commit | precision | batch | units | runs | bare img/s | loop img/s | loop channels-last | "
                  "loop GFLOP/s | peak GFLOP/s | of the peak | ÷ fp32 loop | compiled ÷ eager, steady |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for key in dict.fromkeys((r["commit"], r["precision"], r["batch_size"], r["mi_units"]) for r in here):
            runs = [r for r in here if (r["commit"], r["precision"], r["batch_size"], r["mi_units"]) == key]

            def median(field: str) -> float:
                return statistics.median(float(r[field]) for r in runs)
            versus = f"{median('vs_fp32_loop'):.2f}" if all(r["vs_fp32_loop"] for r in runs) else ""
            compiled = [float(r["steady_compiled_img_s"]) / float(r["steady_eager_img_s"])
                        for r in runs if r.get("steady_compiled_img_s")]  # rows before --compile-rows have none
            compiled = f"{statistics.median(compiled):.2f}" if compiled else ""
            lines.append(f"| {' | '.join(key)} | {len(runs)} | {median('bare_img_s'):.1f} | {median('loop_img_s'):.1f} | "
                         f"{median('loop_cl_img_s'):.1f} | {median('loop_gflop_s'):.1f} | {median('peak_gflop_s'):.0f} | "
                         f"{100 * median('of_peak'):.1f} % | {versus} | {compiled} |")
        lines.append("")
    lines.append(END)
    return between_markers(doc.read_text(), BEGIN, END, lines)


def matmul_flops_per_s(dtype: torch.dtype = torch.float32, size: int = 2048, seconds: float = 1.0) -> float:
    """Best of 3 timings of repeated (size × size) products, each at least ``seconds`` long. An
    emulated precision (bf16 on a CPU without AVX512-BF16/AMX runs ~300× slower than fp32) is timed
    at size 512 so that the measurement itself stays short."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    start = time.perf_counter()
    a @ b  # warm-up, and a first estimate
    if time.perf_counter() - start > 0.5 and size > 512:
        return matmul_flops_per_s(dtype, 512, seconds)
    best = float("inf")
    for _ in range(3):
        start, repeats = time.perf_counter(), 0
        while (elapsed := time.perf_counter() - start) < seconds:
            a @ b
            repeats += 1
        best = min(best, elapsed / repeats)
    return 2 * size ** 3 / best


def peaks() -> dict[str, float]:
    """Matmul FLOP/s per precision. fp16 only where the CPU computes it natively (AVX512-FP16/AMX-FP16):
    elsewhere torch emulates it about 50× slower than fp32, which is no peak of anything."""
    found = {"fp32": matmul_flops_per_s(torch.float32), "bf16": matmul_flops_per_s(torch.bfloat16)}
    if torch.ops.mkldnn._is_mkldnn_fp16_supported():
        found["fp16"] = matmul_flops_per_s(torch.float16)
    return found


def bare_step(model, disc, optimiser, x, config):
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=config.run.precision == "bf16"):
        out = model(x)
        encoded = prior.encode_for_prior(out.y.float())
        disc.requires_grad_(False)
        loss = out.loss + config.objective.gamma * prior.encoder_prior_loss(disc, encoded)
        disc.requires_grad_(True)
        loss = loss + prior.discriminator_loss(disc, encoded.detach(), config.objective.prior_gradient_penalty)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()


def bare_loop(config: PretrainConfig, images: torch.Tensor) -> tuple[float, int]:
    """The reference: the same step with nothing around it. Returns (seconds, images)."""
    _, model, disc = build_models(config, images.shape[1], images.shape[2])
    model, disc = model.to(images.device).train(), disc.to(images.device)
    memory_format = torch.channels_last if config.run.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimiser = torch.optim.Adam([{"params": model.parameters()}, {"params": disc.parameters()}],
                                 lr=config.optimiser.lr, betas=(config.optimiser.adam_beta1, config.optimiser.adam_beta2), fused=True)
    n, b = images.shape[0], config.optimiser.batch_size
    steps_per_epoch = n // b
    start = time.perf_counter()
    for epoch in range(config.run.epochs):
        order = epoch_order(n, config.run.seed, epoch, images.device)
        for step in range(steps_per_epoch):
            x = normalise(images[order[step * b:(step + 1) * b]]).contiguous(memory_format=memory_format)
            bare_step(model, disc, optimiser, x, config)
    if images.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, config.run.epochs * steps_per_epoch * b


def _inplace_addmm_flop(self_shape, mat1_shape, mat2_shape, *args, out_shape=None, **kwargs) -> int:
    # FlopCounterMode counts addmm but not its in-place form, which the MI heads' wide form runs.
    return 2 * mat1_shape[0] * mat1_shape[1] * mat2_shape[1]


def step_flops_per_image(config: PretrainConfig, images: torch.Tensor) -> float:
    # FlopCounterMode cannot follow the gradient penalty's double backward; the penalty runs on the
    # 64→1000→200→1 discriminator and adds well under 1 % of a step's FLOPs.
    config = PretrainConfig.of(**{**config.to_dict(), "prior_gradient_penalty": 0.0, "precision": "fp32"})
    _, model, disc = build_models(config, images.shape[1], images.shape[2])
    optimiser = torch.optim.Adam([{"params": model.parameters()}, {"params": disc.parameters()}], lr=config.optimiser.lr)
    x = normalise(images[:config.optimiser.batch_size])
    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.addmm_: _inplace_addmm_flop}) as counter:
        bare_step(model, disc, optimiser, x, config)
    return counter.get_total_flops() / config.optimiser.batch_size


def dimctl_loop(config: PretrainConfig, data, run_dir: Path) -> tuple[float, int]:
    start = time.perf_counter()
    result = pretrain(config, data, run_dir)
    return time.perf_counter() - start, result.steps * config.optimiser.batch_size


def steady_rates(config: PretrainConfig, data, run_dir: Path, warmup: int) -> dict[str, float]:
    """The loop eager and with --compile, one run each (compile_throughput.py's ``run``): steady
    images/s (metrics.jsonl's windows after ``warmup`` steps) and wall seconds (the compiled run's
    include its compilation)."""
    found = {}
    for name, compiled in (("eager", False), ("compiled", True)):
        seconds, steady, _ = steady_run(config.replace(compile=compiled, log_every=5), data, run_dir / name, warmup)
        found[f"{name}_wall_s"], found[f"steady_{name}_img_s"] = seconds, steady
    return found


def dimctl_command(config: PretrainConfig, run_dir: Path, preload: Path | None) -> tuple[float, int]:
    cmd = [sys.executable, "-m", "dimctl", "pretrain", "--dataset", config.data.dataset, "--mi-units", str(config.objective.mi_units),
           "--epochs", str(config.run.epochs), "--batch-size", str(config.optimiser.batch_size), "--checkpoint-every", "0",
           "--precision", config.run.precision, "--out", str(run_dir), "--force", "--cpu"]
    env = {**os.environ, "DIMCTL_NO_PROGRESS": "1"}
    if preload is not None:
        env["LD_PRELOAD"] = str(preload)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    elapsed = time.perf_counter() - start
    steps = json.loads((run_dir / "config.json").read_text())["total_steps"]
    return elapsed, steps * config.optimiser.batch_size


def best_of(repeats: int, runs: dict) -> dict[str, float]:
    best, counts = {k: float("inf") for k in runs}, {}
    for _ in range(repeats):
        for name, fn in runs.items():
            seconds, count = fn()
            best[name], counts[name] = min(best[name], seconds), count
    return {k: counts[k] / best[k] for k in runs}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--batch-sizes", default="64,256")
    parser.add_argument("--mi-units", default="256,2048")
    parser.add_argument("--images", type=int, default=2800, help="Images per measurement (rounded up to whole epochs).")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--precisions", default="auto",
                        help="Comma-separated; 'auto' = fp32, plus bf16 where this machine runs it faster than fp32.")
    parser.add_argument("--csv", type=Path, help="append the table's rows to this CSV (results/...)")
    parser.add_argument("--no-command", action="store_true", help="leave out the whole-command timing")
    parser.add_argument("--compile-rows", action="store_true", help="also the loop's steady state eager and with "
                        "--compile (compilation takes tens of seconds a configuration)")
    parser.add_argument("--warmup-steps", type=int, default=10, help="with --compile-rows: steps left out of the "
                        "steady state")
    parser.add_argument("--render", action="store_true", help="only write docs/benchmarks.md's table from "
                        "results/pretrain_throughput.csv")
    args = parser.parse_args()
    if args.render:
        DOC.write_text(render())
        return
    name, flags = machine()
    commit, rows = running_commit(), []

    data = load_dataset(args.dataset)
    images = data.train_images
    peak = peaks()
    thresholds = keep_freed_memory()  # the loop runs in this process: set as `dimctl` sets them at start-up
    allocator = ("tcmalloc" if "tcmalloc" in os.environ.get("LD_PRELOAD", "")
                 else "glibc with dimctl's thresholds" if thresholds else "glibc")
    print(f"machine: {torch.get_num_threads()} threads, torch {torch.__version__}, allocator {allocator}, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}; matmul 2048³: "
          + ", ".join(f"{name} {value / 1e9:.0f} GFLOP/s" for name, value in peak.items())
          + f" (bf16/fp32 {peak['bf16'] / peak['fp32']:.2f}×)")
    precisions = args.precisions.split(",")
    if precisions == ["auto"]:
        precisions = ["fp32", "bf16"] if peak["bf16"] > peak["fp32"] else ["fp32"]
        if peak["bf16"] <= peak["fp32"]:
            print("bf16 rows left out: this CPU emulates bf16 (no AVX512-BF16 or AMX), slower than fp32; "
                  "--precision auto picks fp32 here")
    print(f"settings: dataset={args.dataset} preset=dim-l estimator=jsd prior on, {args.images}+ images per "
          f"measurement, best of {args.repeats}")
    print(f"{'prec':>4} {'batch':>5} {'units':>5} {'bare':>8} {'loop':>8} {'loop-cl':>8} {'loop/bare':>9} {'cl/bare':>8} "
          f"{'GFLOP/img':>9} {'GFLOP/s':>8} {'of peak':>7} {'÷fp32':>6}")
    fp32_loop = {}
    with tempfile.TemporaryDirectory() as tmp:
        for units in [int(u) for u in args.mi_units.split(",")]:
            for batch in [int(b) for b in args.batch_sizes.split(",")]:
                for precision in precisions:
                    epochs = max(1, math.ceil(args.images / (images.shape[0] // batch * batch)))
                    config = PretrainConfig.of(dataset=args.dataset, mi_units=units, epochs=epochs, batch_size=batch,
                                            checkpoint_every=0, cpu=True, precision=precision)
                    cl = PretrainConfig.of(**{**config.to_dict(), "channels_last": True})
                    rate = best_of(args.repeats, {
                        "bare": lambda: bare_loop(config, images),
                        "loop": lambda: dimctl_loop(config, data, Path(tmp) / f"loop-{units}-{batch}-{precision}"),
                        "loop-cl": lambda: dimctl_loop(cl, data, Path(tmp) / f"cl-{units}-{batch}-{precision}"),
                    })
                    steady = (steady_rates(config, data, Path(tmp) / f"steady-{units}-{batch}-{precision}",
                                           args.warmup_steps) if args.compile_rows else {})
                    if steady:
                        print(f"     steady state: eager {steady['steady_eager_img_s']:.1f} img/s, compiled "
                              f"{steady['steady_compiled_img_s']:.1f} img/s "
                              f"({steady['steady_compiled_img_s'] / steady['steady_eager_img_s']:.2f}×); whole runs "
                              f"{steady['eager_wall_s']:.1f} s and {steady['compiled_wall_s']:.1f} s", flush=True)
                    flops = step_flops_per_image(config, images)
                    achieved = flops * rate["loop"]
                    if precision == "fp32":
                        fp32_loop[units, batch] = rate["loop"]
                    versus = rate["loop"] / fp32_loop[units, batch] if (units, batch) in fp32_loop else float("nan")
                    print(f"{precision:>4} {batch:5d} {units:5d} {rate['bare']:8.1f} {rate['loop']:8.1f} "
                          f"{rate['loop-cl']:8.1f} {rate['loop'] / rate['bare']:9.3f} {rate['loop-cl'] / rate['bare']:8.3f} "
                          f"{flops / 1e9:9.3f} {achieved / 1e9:8.1f} {achieved / peak[precision]:7.1%} {versus:6.2f}",
                          flush=True)
                    rows.append({"precision": precision, "batch_size": batch, "mi_units": units,
                                 "bare_img_s": round(rate["bare"], 1), "loop_img_s": round(rate["loop"], 1),
                                 "loop_cl_img_s": round(rate["loop-cl"], 1), "gflop_per_image": round(flops / 1e9, 3),
                                 "loop_gflop_s": round(achieved / 1e9, 1), "of_peak": round(achieved / peak[precision], 4),
                                 "vs_fp32_loop": "" if math.isnan(versus) else round(versus, 3),
                                 "peak_gflop_s": round(peak[precision] / 1e9, 1), "images": args.images,
                                 "repeats": args.repeats, "allocator": allocator, "machine": name, "cpu_flags": flags,
                                 "torch": torch.__version__, "commit": commit, "date": datetime.date.today().isoformat(),
                                 **{k: round(v, 1) for k, v in steady.items()}})
        if args.csv:
            append_rows(args.csv, FIELDS, rows)
        if args.no_command:
            return

        # The command as users run it, at the first settings, with and without tcmalloc.
        units, batch = int(args.mi_units.split(",")[0]), int(args.batch_sizes.split(",")[0])
        epochs = max(1, math.ceil(args.images / (images.shape[0] // batch * batch)))
        config = PretrainConfig.of(dataset=args.dataset, mi_units=units, epochs=epochs, batch_size=batch,
                                checkpoint_every=0, cpu=True, precision=precisions[0])
        runs = {"bare": lambda: bare_loop(config, images),
                "command": lambda: dimctl_command(config, Path(tmp) / "cmd", None)}
        if TCMALLOC.exists():
            runs["command+tcmalloc"] = lambda: dimctl_command(config, Path(tmp) / "cmd-tc", TCMALLOC)
        rate = best_of(args.repeats, runs)
        print(f"whole command (start-up, imports and data loading included), {config.run.precision}, batch {batch}, "
              f"mi-units {units}, {epochs} epochs:")
        for name, value in rate.items():
            print(f"  {name:17s} {value:8.1f} images/s  {value / rate['bare']:.3f} of bare (in-process, {allocator})")


if __name__ == "__main__":
    main()
