#!/usr/bin/env python3
"""Data-parallel training of a small CNN on Fashion-MNIST with ringfuse.torch (Horovod's API).

    ringfuse-run -np 4 /usr/bin/python3 examples/python/fashion_mnist.py --epochs 2

Reads Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist, IDX files). Each rank
trains on its own shard of every epoch; gradients are averaged by hvd.DistributedOptimizer as
backward produces them; rank 0 prints loss, test accuracy and samples/s per epoch.
"""

import argparse
import gzip
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import ringfuse.torch as hvd

DATA_DIR = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    """An IDX file (big-endian header: magic, dims) as a uint8 tensor."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return torch.frombuffer(bytearray(data[4 + 4 * dims:]), dtype=torch.uint8).reshape(shape)


def load(split, data_dir, limit):
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(os.path.join(data_dir, "%s-images-idx3-ubyte.gz" % prefix))
    labels = read_idx(os.path.join(data_dir, "%s-labels-idx1-ubyte.gz" % prefix))
    if limit:
        images, labels = images[:limit], labels[:limit]
    # Normalised with the training set's mean and standard deviation.
    return ((images.float() / 255.0 - 0.2860) / 0.3530).unsqueeze(1), labels.long()


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 5, padding=2)
        self.conv2 = nn.Conv2d(16, 32, 5, padding=2)
        self.fc1 = nn.Linear(32 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def evaluate(model, images, labels, batch_size):
    """Accuracy over the test set, each rank scoring its shard, summed with allreduce."""
    model.eval()
    mine = range(hvd.rank(), len(images), hvd.size())
    correct = torch.zeros(2, dtype=torch.float64)
    with torch.no_grad():
        idx = torch.tensor(list(mine), dtype=torch.long)
        for start in range(0, len(idx), batch_size):
            rows = idx[start:start + batch_size]
            pred = model(images[rows]).argmax(1)
            correct[0] += (pred == labels[rows]).sum().item()
            correct[1] += len(rows)
    total = hvd.allreduce(correct, op=hvd.Sum, name="eval.correct")
    model.train()
    return (total[0] / total[1]).item()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64, help="per rank")
    parser.add_argument("--lr", type=float, default=0.01, help="per rank; scaled by the size")
    parser.add_argument("--data-dir", default=DATA_DIR)
    parser.add_argument("--limit", type=int, default=0,
                        help="use only the first N training and test images (quick runs)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    args = parser.parse_args()

    hvd.init()
    torch.set_num_threads(args.threads)
    torch.manual_seed(42)
    train_x, train_y = load("train", args.data_dir, args.limit)
    test_x, test_y = load("test", args.data_dir, args.limit // 6 if args.limit else 0)

    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr * hvd.size(), momentum=0.9)
    optimizer = hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters())
    # Every rank starts from rank 0's weights and optimizer state.
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)
    hvd.broadcast_optimizer_state(optimizer, root_rank=0)

    for epoch in range(args.epochs):
        # The same permutation on every rank; each takes every size-th sample of it.
        order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(epoch))
        mine = order[hvd.rank()::hvd.size()]
        steps = len(mine) // args.batch_size  # equal on every rank: the same collectives
        steps = min(steps, hvd.allreduce(torch.tensor(steps), op=hvd.Min).item())
        started, loss_sum = time.perf_counter(), 0.0
        for step in range(steps):
            rows = mine[step * args.batch_size:(step + 1) * args.batch_size]
            optimizer.zero_grad()
            loss = F.cross_entropy(model(train_x[rows]), train_y[rows])
            loss.backward()
            optimizer.step()
            loss_sum += loss.item()
        elapsed = time.perf_counter() - started
        mean_loss = hvd.allreduce(torch.tensor(loss_sum / max(steps, 1)), name="epoch.loss")
        accuracy = evaluate(model, test_x, test_y, 512)
        if hvd.rank() == 0:
            samples = steps * args.batch_size * hvd.size()
            print("epoch %d: loss %.4f, test accuracy %.4f, %.0f samples/s (%d ranks)"
                  % (epoch + 1, mean_loss.item(), accuracy, samples / elapsed, hvd.size()),
                  flush=True)
    hvd.shutdown()


if __name__ == "__main__":
    main()
