"""The ADMM linear SVM as the number of classes grows: peak memory and time per iteration.

    python benchmarks/svm_many_classes.py                   # N = 20,000, D = 256, K = 10, 100, 1000
    python benchmarks/svm_many_classes.py --classes 10,100 --rows 50000

Each fit runs in its own process (peak RSS is per process) on the same synthetic, standardised
Gaussian classes, for a fixed number of iterations (tol 0, so every K does the same work per
iteration). It prints the peak RSS above the process's baseline in (N, K) float32 arrays — what
evaluate/linear_svm.py's memory check assumes — and milliseconds per iteration, with each K's
time relative to the smallest K's in the same run.
"""

import argparse
import json
import subprocess
import sys

FIT = """
import json, resource, sys, time, torch
from dimctl.evaluate.linear_svm import fit_linear_svm
n, d, k, iterations = map(int, sys.argv[1:5])
torch.manual_seed(0)
centres = torch.randn(k, d)
y = torch.randint(0, k, (n,))
x = centres[y] + 2 * torch.randn(n, d)
x = (x - x.mean(0)) / x.std(0)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
fit_linear_svm(x, y, k, max_iter=iterations, tol=0)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"arrays": (peak - base) * 1024 / (n * k * 4), "ms_per_iteration": 1000 * seconds / iterations}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dims", type=int, default=256)
    parser.add_argument("--classes", default="10,100,1000")
    parser.add_argument("--iterations", type=int, default=50)
    args = parser.parse_args()
    print(f"N = {args.rows}, D = {args.dims}, {args.iterations} iterations each")
    print(f"{'K':>6}  {'peak (N,K) arrays':>18}  {'ms/iteration':>12}  {'× K=' + args.classes.split(',')[0]:>8}")
    first = None
    for k in map(int, args.classes.split(",")):
        out = subprocess.run([sys.executable, "-c", FIT, str(args.rows), str(args.dims), str(k), str(args.iterations)],
                             capture_output=True, text=True, check=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
        first = first or result["ms_per_iteration"]
        print(f"{k:>6}  {result['arrays']:>18.1f}  {result['ms_per_iteration']:>12.1f}  "
              f"{result['ms_per_iteration'] / first:>8.2f}")


if __name__ == "__main__":
    main()
