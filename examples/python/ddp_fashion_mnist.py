#!/usr/bin/env python3
"""DistributedDataParallel on the torch.distributed backend "ringfuse": a small CNN on
Fashion-MNIST, the plain PyTorch way; the only Ringfuse line is the import that registers the
backend.

    torchrun --nproc_per_node 2 examples/python/ddp_fashion_mnist.py --epochs 1
    ringfuse-run -np 2 /usr/bin/python3 examples/python/ddp_fashion_mnist.py --epochs 1

Reads Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist, IDX files); each rank
trains on its own shard; rank 0 prints loss and test accuracy per epoch.
"""

import argparse
import gzip
import os

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

import ringfuse.distributed  # registers the backend "ringfuse"

DATA_DIR = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    """An IDX file (big-endian header: magic, dims) as a uint8 tensor."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return torch.frombuffer(bytearray(data[4 + 4 * dims:]), dtype=torch.uint8).reshape(shape)


def load(split, limit):
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(os.path.join(DATA_DIR, f"{prefix}-images-idx3-ubyte.gz"))[:limit]
    labels = read_idx(os.path.join(DATA_DIR, f"{prefix}-labels-idx1-ubyte.gz"))[:limit]
    return ((images.float() / 255 - 0.286) / 0.353).unsqueeze(1), labels.long()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit", type=int, default=None, help="use the first N images")
    args = parser.parse_args()

    # env://, from torchrun's variables: torchrun and ringfuse-run both set them.
    dist.init_process_group("ringfuse")
    rank, size = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)

    model = DistributedDataParallel(nn.Sequential(
        nn.Conv2d(1, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 5), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 10)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05 * size, momentum=0.9)
    images, labels = load("train", args.limit)
    test_images, test_labels = load("test", args.limit)

    for epoch in range(args.epochs):
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(epoch))
        shard = order[rank::size]
        for start in range(0, len(shard), args.batch_size):
            batch = shard[start:start + args.batch_size]
            loss = F.cross_entropy(model(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()  # DDP all-reduces the gradients over ringfuse as they are produced
            optimizer.step()
        with torch.no_grad():
            correct = (model(test_images).argmax(1) == test_labels).sum()
        loss = loss.detach()
        dist.all_reduce(loss)
        if rank == 0:
            print(f"epoch {epoch + 1}: loss {loss.item() / size:.3f}, "
                  f"test accuracy {correct.item() / len(test_labels):.3f}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
