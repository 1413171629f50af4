// Real data from Debian's packages, read offline into memory: Fashion-MNIST's gzipped IDX
// files (dataset-fashion-mnist) and scikit-learn's handwritten digits CSV (python3-sklearn's
// data file, extracted by scripts/fetch-digits.sh without installing the Python stack).
#pragma once

#include <string>

#include <torch/torch.h>

namespace ringfuse_train {

struct Split {
  torch::Tensor images;  // [n, 1, h, w] float, normalised
  torch::Tensor labels;  // [n] int64
};

struct Dataset {
  std::string name;
  Split train;
  Split test;
  int classes = 10;
};

/// Fashion-MNIST from `dir` (default /usr/share/datasets/fashion-mnist): 60k/10k 28×28 images.
Dataset load_fashion_mnist(const std::string& dir);

/// The 1,797 8×8 digits from `csv_gz` (sklearn/datasets/data/digits.csv.gz); the last 297
/// rows are the test split.
Dataset load_digits(const std::string& csv_gz);

}  // namespace ringfuse_train
