"""Where one DIM(L) training step spends its time, by operator (torch.profiler), in fp32 and bf16.

    python benchmarks/profile_step.py                              # batch 64, mi-units 2048, fp32 and bf16
    python benchmarks/profile_step.py --mi-units 256 --precisions bf16 --top 25
    python benchmarks/profile_step.py --channels-last

Runs dimctl's own step (train/loop.py's ``step_losses``, backward and Adam, through Accelerate's
autocast exactly as `dimctl pretrain` does) on digits at the paper's settings (DCGAN, DIM(L),
JSD, prior on), warms up, then profiles --steps steps and prints the operators with the most
self CPU time, and how much of the step went to dtype conversions (``aten::copy_``/``aten::to``).
"""

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from dimctl.data.registry import load_dataset
from dimctl.data.transforms import normalise
from dimctl.train.config import PretrainConfig
from dimctl.train.loop import make_accelerator, prepare_models, step_losses


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--mi-units", type=int, default=2048)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()

    data = load_dataset("digits")
    images = normalise(data.train_images[:args.batch_size])
    for precision in args.precisions.split(","):
        config = PretrainConfig.of(dataset="digits", mi_units=args.mi_units, batch_size=args.batch_size, cpu=True,
                                precision=precision, channels_last=args.channels_last, checkpoint_every=0)
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
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        seconds = (time.perf_counter() - start) / args.steps
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                step()
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        converts = sum(e.self_cpu_time_total for e in events if e.key in ("aten::copy_", "aten::to", "aten::_to_copy"))
        print(f"\n== {precision}, batch {args.batch_size}, mi-units {args.mi_units}"
              f"{', channels-last' if args.channels_last else ''}: {seconds * 1000:.1f} ms/step "
              f"({args.batch_size / seconds:.1f} img/s unprofiled); dtype copies {converts / total:.1%} of self time")
        print(events.table(sort_by="self_cpu_time_total", row_limit=args.top, max_name_column_width=40))
        # Accelerate's mixed-precision setting is process-wide; reset it for the next precision.
        from accelerate.state import AcceleratorState, GradientState
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()


if __name__ == "__main__":
    main()
