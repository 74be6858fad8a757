#!/usr/bin/env python
"""
Hungarian-matching benchmark: host time of ``kd_core.matching.linear_sum_assignment_batch`` on
DETRDistill-shaped problems, one thread against several.

The default problem is the stage-by-stage logits KD of the DETRDistill configs at batch 2: 6 decoder
stages x 2 images, each matching 300 student to 300 teacher queries (12 matrices of 300 x 300), plus,
in the same call here (the criterion makes its own call), matrices the size of the detection
criterion's matching of those queries to ground truth (6 stages x 2 images of 300 x 20). On a GPU
these run on the host while the device waits (the H200 timing of the real-scale DETRDistill KD step in
docs/results.md). Costs are uniform random numbers; trained networks' costs may solve faster or slower.

Each repeat times every worker count once, in a new order, and the medians are printed, with the
speedup over one thread. Figures only: nothing is asserted.

--overlap-ops N adds the comparison that ``linear_sum_assignment_batch_async`` is for: the caller
issues N small tensor operations (N / 2 multiply-adds on 64 floats: host dispatch time, as a GPU
step's launches are) either after the synchronous matching or while the background thread solves
(the DETRDistill step issues the student's, feature and query-group losses there). Printed: the
median of each order and their ratio. An op here costs the host a few microseconds, a GPU step's
about 25-30 (docs/results.md), so N = 10x the GPU step's op count gives its host time. --torch-threads
sets PyTorch's CPU threads: a GPU step leaves them idle, a CPU training run keeps them busy.

    python tools/benchmark_matching.py
    python tools/benchmark_matching.py --blocks 12 --rows 300 --cols 300 --workers 1 2 8 --repeats 20
    python tools/benchmark_matching.py --overlap-ops 15000 --repeats 30 --torch-threads 1
"""
import argparse
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    import torch

    from kd_core.matching import default_matching_workers, linear_sum_assignment_batch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=12, help="large matrices per call (stages x images)")
    parser.add_argument("--rows", type=int, default=300, help="student queries")
    parser.add_argument("--cols", type=int, default=300, help="teacher queries")
    parser.add_argument("--gt-blocks", type=int, default=12, help="small query-to-GT matrices in the same call")
    parser.add_argument("--gt", type=int, default=20, help="ground-truth boxes per image")
    parser.add_argument("--workers", type=int, nargs="+", default=None, help="default: 1 and the default count")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overlap-ops", type=int, default=0, help="also time N small ops issued after / during the matching")
    parser.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads (default: PyTorch's)")
    args = parser.parse_args(argv)

    if args.torch_threads is not None:
        torch.set_num_threads(args.torch_threads)
    workers = args.workers or sorted({1, default_matching_workers()})
    g = torch.Generator().manual_seed(args.seed)
    costs = [torch.rand(args.rows, args.cols, generator=g) for _ in range(args.blocks)]
    costs += [torch.rand(args.rows, args.gt, generator=g) for _ in range(args.gt_blocks)]
    print(
        f"{args.blocks} x ({args.rows} x {args.cols}) + {args.gt_blocks} x ({args.rows} x {args.gt}) cost matrices; "
        f"usable CPUs {default_matching_workers()} (capped at 8); PyTorch threads {torch.get_num_threads()}; {args.repeats} repeats",
        flush=True,
    )
    reference = linear_sum_assignment_batch(costs, max_workers=1)
    times = {w: [] for w in workers}
    rng = random.Random(args.seed)
    for _ in range(args.repeats):
        for w in rng.sample(workers, len(workers)):
            start = time.perf_counter()
            solution = linear_sum_assignment_batch(costs, max_workers=w)
            times[w].append(time.perf_counter() - start)
            if any(not torch.equal(a, c) or not torch.equal(b, d) for (a, b), (c, d) in zip(reference, solution)):
                raise SystemExit(f"{w} workers gave another assignment than one thread")
    base = statistics.median(times[workers[0]])
    for w in workers:
        median = statistics.median(times[w])
        print(
            f"workers {w:2d}: median {median * 1000:8.2f} ms  (min {min(times[w]) * 1000:.2f}, max {max(times[w]) * 1000:.2f})"
            f"   {base / median:5.2f}x vs {workers[0]} worker(s)"
        )
    if args.overlap_ops > 0:
        overlap(costs, reference, args.overlap_ops, args.repeats, rng)


def overlap(costs, reference, num_ops: int, repeats: int, rng) -> None:
    """Median time of (matching, then num_ops small ops) against (start the matching, num_ops small
    ops, wait for it), default solver threads."""
    import torch

    from kd_core.matching import linear_sum_assignment_batch, linear_sum_assignment_batch_async

    x = torch.rand(64)

    def issue():
        y = x
        for _ in range(num_ops // 2):
            y = y * 1.0001 + 1e-6
        return y

    def sync():
        solution = linear_sum_assignment_batch(costs)
        issue()
        return solution

    def background():
        pending = linear_sum_assignment_batch_async(costs)
        issue()
        return pending.result()

    orders = {"ops alone": lambda: (issue(), reference)[1], "matching, then ops": sync, "ops during the matching": background}
    times = {name: [] for name in orders}
    for _ in range(repeats):
        for name in rng.sample(list(orders), len(orders)):
            start = time.perf_counter()
            solution = orders[name]()
            times[name].append(time.perf_counter() - start)
            if any(not torch.equal(a, c) or not torch.equal(b, d) for (a, b), (c, d) in zip(reference, solution)):
                raise SystemExit(f"'{name}' gave another assignment than one thread")
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, median in medians.items():
        print(f"{name:<24} ({num_ops} ops): median {median * 1000:8.2f} ms  (min {min(times[name]) * 1000:.2f}, max {max(times[name]) * 1000:.2f})")
    print(f"ops during / after the matching: {medians['ops during the matching'] / medians['matching, then ops']:.3f}")


if __name__ == "__main__":
    main()
