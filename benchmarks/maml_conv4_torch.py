"""One MAML meta-gradient on conv-4 in PyTorch, the shapes of `maml_conv4_step` (Rust).

    python benchmarks/maml_conv4_torch.py [--filters 32] [--meta-batch 4] [--threads 1]
        [--dtype float64]

A side-by-side benchmark, not a test: run it back to back with

    cargo run --release -p bilevel --example maml_conv4_step

The network: four blocks of 3x3 convolution (padding 1), relu and 2x2 max-pool, no batch norm,
then a dense layer to 5 classes; mean softmax cross-entropy. A task: 5-way 1-shot with 15
queries per class (28x28 grey images; random pixels, since the cost does not depend on them).
The step, for each task of the meta-batch: theta' = phi - alpha grad l(phi) on the support,
then the gradient of the query loss L(theta') with respect to phi through the inner step
(second order: `create_graph=True`, what MAML does); averaged over the tasks. The figure is the
median over 7 blocks of the mean time per meta-gradient in the block, after a warm-up block.
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def init(filters, dtype, generator):
    params = []
    channels = 1
    for _ in range(4):
        fan_in = 9 * channels
        params.append(torch.randn(filters, channels, 3, 3, dtype=dtype, generator=generator) / fan_in**0.5)
        params.append(torch.zeros(filters, dtype=dtype))
        channels = filters
    params.append(torch.randn(5, filters, dtype=dtype, generator=generator) / filters**0.5)
    params.append(torch.zeros(5, dtype=dtype))
    return [p.requires_grad_() for p in params]


def forward(params, images):
    h = images
    for block in range(4):
        h = F.conv2d(h, params[2 * block], params[2 * block + 1], padding=1)
        h = F.max_pool2d(F.relu(h), 2)
    return F.linear(h.flatten(1), params[8], params[9])


def meta_gradient(params, tasks, alpha):
    total = [torch.zeros_like(p) for p in params]
    for support, support_labels, query, query_labels in tasks:
        inner = F.cross_entropy(forward(params, support), support_labels)
        grads = torch.autograd.grad(inner, params, create_graph=True)
        adapted = [p - alpha * g for p, g in zip(params, grads)]
        outer = F.cross_entropy(forward(adapted, query), query_labels)
        for t, g in zip(total, torch.autograd.grad(outer, params)):
            t += g / len(tasks)
    return total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--filters", type=int, default=32)
    parser.add_argument("--meta-batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    generator = torch.Generator().manual_seed(0)
    params = init(args.filters, dtype, generator)
    tasks = []
    for _ in range(args.meta_batch):
        support = torch.rand(5, 1, 28, 28, dtype=dtype, generator=generator)
        query = torch.rand(75, 1, 28, 28, dtype=dtype, generator=generator)
        tasks.append((support, torch.arange(5), query, torch.arange(5).repeat_interleave(15)))
    per_block = 5
    for _ in range(per_block):
        meta_gradient(params, tasks, 0.4)
    blocks = []
    for _ in range(7):
        started = time.perf_counter()
        for _ in range(per_block):
            meta_gradient(params, tasks, 0.4)
        blocks.append((time.perf_counter() - started) / per_block)
    count = sum(p.numel() for p in params)
    print(
        f"torch {torch.__version__} {args.dtype}, {args.threads} thread(s): conv-4 "
        f"({args.filters} filters, {count} parameters), 5-way 1-shot, 15 queries, meta-batch "
        f"{args.meta_batch}, r = 1: {statistics.median(blocks) * 1e3:.1f} ms per MAML "
        f"meta-gradient (median of 7 blocks of {per_block})"
    )


if __name__ == "__main__":
    main()
