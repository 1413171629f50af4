// One rank of the multi-process matrix: runs a collective over every dtype × op × algorithm ×
// count, with inputs every rank can compute for every other rank, and checks the result
// against a reference computed here. Exits 0 when every check passed, 1 otherwise.
// Also serves the fault tests: --mode endless keeps all-reducing until an error, which it
// prints before exiting 3. In --mode early-exit and --mode leave every rank does the same,
// except --victim: after --after all-reduces it stops calling them, and either returns 0 from
// main (early-exit) or destroys its Context and stays alive for --linger-s (leave), so the
// others' next all-reduce has a peer that left in order rather than crashed.
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "core/combine.hpp"
#include "reduce/half.hpp"
#include "ringfuse/ringfuse.hpp"

namespace {

using ringfuse::Algorithm;
using ringfuse::DataType;
using ringfuse::ReduceOp;

double stored(DataType type, double value) {
  // The value as the dtype can hold it (inputs are chosen to be exact; avg results are not).
  switch (type) {
    case DataType::f16: return ringfuse::reduce::f16_to_float(ringfuse::reduce::float_to_f16(float(value)));
    case DataType::bf16: return ringfuse::reduce::bf16_to_float(ringfuse::reduce::float_to_bf16(float(value)));
    case DataType::f32: return static_cast<float>(value);
    case DataType::boolean: return value != 0 ? 1 : 0;
    default: return value;
  }
}

void store(std::byte* base, std::size_t index, DataType type, double value) {
  void* at = base + index * ringfuse::element_size(type);
  switch (type) {
    case DataType::f16: {
      const auto bits = ringfuse::reduce::float_to_f16(static_cast<float>(value));
      std::memcpy(at, &bits, 2);
      break;
    }
    case DataType::bf16: {
      const auto bits = ringfuse::reduce::float_to_bf16(static_cast<float>(value));
      std::memcpy(at, &bits, 2);
      break;
    }
    case DataType::f32: *static_cast<float*>(at) = static_cast<float>(value); break;
    case DataType::f64: *static_cast<double*>(at) = value; break;
    case DataType::i8: *static_cast<std::int8_t*>(at) = static_cast<std::int8_t>(value); break;
    case DataType::u8: *static_cast<std::uint8_t*>(at) = static_cast<std::uint8_t>(value); break;
    case DataType::i32: *static_cast<std::int32_t*>(at) = static_cast<std::int32_t>(value); break;
    case DataType::i64: *static_cast<std::int64_t*>(at) = static_cast<std::int64_t>(value); break;
    case DataType::i16: *static_cast<std::int16_t*>(at) = static_cast<std::int16_t>(value); break;
    case DataType::boolean: *static_cast<std::uint8_t*>(at) = value != 0 ? 1 : 0; break;
  }
}

double load(const std::byte* base, std::size_t index, DataType type) {
  const void* at = base + index * ringfuse::element_size(type);
  std::uint16_t bits = 0;
  switch (type) {
    case DataType::f16: std::memcpy(&bits, at, 2); return ringfuse::reduce::f16_to_float(bits);
    case DataType::bf16: std::memcpy(&bits, at, 2); return ringfuse::reduce::bf16_to_float(bits);
    case DataType::f32: return *static_cast<const float*>(at);
    case DataType::f64: return *static_cast<const double*>(at);
    case DataType::i8: return *static_cast<const std::int8_t*>(at);
    case DataType::u8: return *static_cast<const std::uint8_t*>(at);
    case DataType::i32: return *static_cast<const std::int32_t*>(at);
    case DataType::i64: return static_cast<double>(*static_cast<const std::int64_t*>(at));
    case DataType::i16: return *static_cast<const std::int16_t*>(at);
    // The raw byte: a result must be exactly 0 or 1.
    case DataType::boolean: return *static_cast<const std::uint8_t*>(at);
  }
  return 0;
}

/// Rank `rank`'s input at `index`: small integers, so sums and products are exact in every
/// dtype and the reference does not depend on the order of reduction.
/// bool: 0 or 1, mostly 0 for the or-operators (sum, max, bor) and bxor, mostly 1 for the
/// and-operators (min, prod, band).
double input(int rank, std::size_t index, DataType type, ReduceOp op) {
  const bool is_unsigned = type == DataType::u8;
  const auto r = static_cast<std::size_t>(rank);
  if (type == DataType::boolean) {
    const bool rare = (r * 7 + index * 3) % 9 == 0;
    return ringfuse::core::is_logical_and(op) != rare ? 1 : 0;
  }
  if (ringfuse::is_bitwise(op)) {
    // Eight-bit patterns, sign-extended for the signed types (so their high bits take part):
    // one bit cleared for band, one set for bor, any for bxor, so that every result keeps
    // some bits and clears others at any world size.
    const std::size_t bit = (r * 5 + index * 3) % 8;
    const std::size_t any = (r * 151 + index * 37 + (index >> 3)) & 0xff;
    const std::size_t pattern = op == ReduceOp::band  ? 0xff & ~(std::size_t{1} << bit)
                                : op == ReduceOp::bor ? std::size_t{1} << bit
                                                      : any;
    return is_unsigned ? static_cast<double>(pattern)
                       : static_cast<double>(static_cast<std::int8_t>(pattern));
  }
  switch (op) {
    case ReduceOp::prod: {
      static constexpr double kSigned[] = {1, -1, 2};
      static constexpr double kUnsigned[] = {1, 2, 3};
      return (is_unsigned ? kUnsigned : kSigned)[(r + index) % 3];
    }
    case ReduceOp::min:
    case ReduceOp::max: {
      const double v = static_cast<double>((r * 13 + index * 5) % 17);
      return is_unsigned ? v : v - 8;
    }
    default: {
      const double v = static_cast<double>((r * 7 + index * 3) % 9);
      return is_unsigned ? v : v - 4;
    }
  }
}

double reference(int size, std::size_t index, DataType type, ReduceOp op) {
  if (type == DataType::boolean) {  // logical and, or or exclusive or (core::combine_bools)
    bool acc = ringfuse::core::is_logical_and(op);
    for (int r = 0; r < size; ++r) {
      const bool v = input(r, index, type, op) != 0;
      acc = ringfuse::core::combine_bools(op, acc, v);
    }
    return acc ? 1 : 0;
  }
  double acc = input(0, index, type, op);
  for (int r = 1; r < size; ++r) {
    acc = ringfuse::core::combine(op, acc, input(r, index, type, op));
  }
  if (op == ReduceOp::avg) {
    acc /= size;
    if (!ringfuse::is_floating_point(type)) acc = std::trunc(acc);
  }
  return stored(type, acc);
}

bool close_enough(double got, double want, DataType type, ReduceOp op) {
  if (op != ReduceOp::avg || !ringfuse::is_floating_point(type)) return got == want;
  const double tolerance = type == DataType::f64 ? 1e-12 : type == DataType::f32 ? 1e-6 : 1e-2;
  return std::abs(got - want) <= tolerance * std::max(1.0, std::abs(want));
}

struct Checker {
  int rank;
  int failures = 0;
  int checks = 0;

  void expect(bool ok, const std::string& what) {
    ++checks;
    if (!ok && ++failures <= 20) std::cerr << "rank " << rank << ": MISMATCH " << what << "\n";
  }
};

/// For an operator that has no meaning on the type (avg of bool): the call must fail on every
/// rank, before any communication (so the ranks stay in step), with an error that says so.
template <typename Call>
void expect_refused(Checker& checker, const std::string& label, Call call) {
  try {
    call();
    checker.expect(false, label + ": accepted, want an invalid-argument error");
  } catch (const ringfuse::Error& e) {
    const bool says_why = std::string(e.what()).find("is not defined") != std::string::npos;
    checker.expect(e.kind() == ringfuse::ErrorKind::invalid_argument && says_why,
                   fmt::format("{}: refused, but with: {}", label, e.what()));
  }
}

std::vector<std::byte> buffer(std::size_t count, DataType type) {
  return std::vector<std::byte>(std::max<std::size_t>(count, 1) * ringfuse::element_size(type));
}

/// Checks a result buffer element by element; reports the first wrong index only.
template <typename Want>
void check_all(Checker& checker, const std::string& label, const std::byte* got,
               std::size_t count, DataType type, ReduceOp op, Want want) {
  for (std::size_t i = 0; i < count; ++i) {
    const double w = want(i);
    const double g = load(got, i, type);
    if (!close_enough(g, w, type, op)) {
      checker.expect(false, fmt::format("{}: index {}: got {}, want {}", label, i, g, w));
      return;
    }
  }
  checker.expect(true, label);
}

void check_allreduce(ringfuse::Context& ctx, Checker& checker, std::span<const std::size_t> counts,
                     std::span<const DataType> types, std::span<const ReduceOp> ops,
                     std::span<const Algorithm> algos) {
  for (Algorithm algo : algos) {
    for (DataType type : types) {
      for (ReduceOp op : ops) {
        for (std::size_t count : counts) {
          auto data = buffer(count, type);
          for (std::size_t i = 0; i < count; ++i) {
            store(data.data(), i, type, input(ctx.rank(), i, type, op));
          }
          const auto label = fmt::format("allreduce {} {}[{}] {}", ringfuse::to_string(algo),
                                         ringfuse::to_string(type), count,
                                         ringfuse::to_string(op));
          if (!ringfuse::is_defined(type, op)) {
            expect_refused(checker, label,
                           [&] { ctx.allreduce(data.data(), count, type, op, algo); });
            continue;
          }
          ctx.allreduce(data.data(), count, type, op, algo);
          check_all(checker, label, data.data(), count, type, op,
                    [&](std::size_t i) { return reference(ctx.size(), i, type, op); });
        }
      }
    }
  }
}

void check_reducescatter(ringfuse::Context& ctx, Checker& checker,
                         std::span<const std::size_t> counts, std::span<const DataType> types,
                         std::span<const ReduceOp> ops) {
  const auto n = static_cast<std::size_t>(ctx.size());
  for (DataType type : types) {
    for (ReduceOp op : ops) {
      for (std::size_t count : counts) {
        auto send = buffer(count * n, type);
        auto recv = buffer(count, type);
        for (std::size_t i = 0; i < count * n; ++i) {
          store(send.data(), i, type, input(ctx.rank(), i, type, op));
        }
        const auto label = fmt::format("reducescatter {}[{}] {}", ringfuse::to_string(type),
                                       count, ringfuse::to_string(op));
        if (!ringfuse::is_defined(type, op)) {
          expect_refused(checker, label,
                         [&] { ctx.reducescatter(send.data(), recv.data(), count, type, op); });
          continue;
        }
        ctx.reducescatter(send.data(), recv.data(), count, type, op);
        const std::size_t base = static_cast<std::size_t>(ctx.rank()) * count;
        check_all(checker, label, recv.data(), count, type, op,
                  [&](std::size_t i) { return reference(ctx.size(), base + i, type, op); });
      }
    }
  }
}

void check_broadcast(ringfuse::Context& ctx, Checker& checker, std::span<const std::size_t> counts,
                     std::span<const DataType> types) {
  for (DataType type : types) {
    for (std::size_t count : counts) {
      for (int root : {0, ctx.size() - 1, ctx.size() / 2}) {
        auto data = buffer(count, type);
        for (std::size_t i = 0; i < count; ++i) {
          store(data.data(), i, type, input(ctx.rank(), i, type, ReduceOp::sum));
        }
        ctx.broadcast(data.data(), count, type, root);
        check_all(checker,
                  fmt::format("broadcast {}[{}] root {}", ringfuse::to_string(type), count, root),
                  data.data(), count, type, ReduceOp::sum,
                  [&](std::size_t i) { return stored(type, input(root, i, type, ReduceOp::sum)); });
      }
    }
  }
}

void check_allgather(ringfuse::Context& ctx, Checker& checker, std::span<const std::size_t> counts,
                     std::span<const DataType> types, bool variable) {
  const int n = ctx.size();
  for (DataType type : types) {
    for (std::size_t count : counts) {
      // allgatherv: rank r contributes count + r elements (rank 0 nothing when count is 0).
      std::vector<std::size_t> sizes(static_cast<std::size_t>(n), count);
      if (variable) {
        for (int r = 0; r < n; ++r) sizes[r] = count + static_cast<std::size_t>(r);
      }
      std::size_t total = 0;
      std::vector<std::size_t> offsets;
      for (std::size_t s : sizes) {
        offsets.push_back(total);
        total += s;
      }
      const std::size_t mine = sizes[ctx.rank()];
      auto send = buffer(mine, type);
      for (std::size_t i = 0; i < mine; ++i) {
        store(send.data(), i, type, input(ctx.rank(), i, type, ReduceOp::sum));
      }
      auto recv = buffer(total, type);
      if (variable) {
        ctx.allgatherv(send.data(), recv.data(), sizes, type);
      } else {
        ctx.allgather(send.data(), recv.data(), count, type);
      }
      for (int r = 0; r < n; ++r) {
        check_all(checker,
                  fmt::format("{} {}[{}] block of rank {}", variable ? "allgatherv" : "allgather",
                              ringfuse::to_string(type), sizes[r], r),
                  recv.data() + offsets[r] * ringfuse::element_size(type), sizes[r], type,
                  ReduceOp::sum,
                  [&](std::size_t i) { return stored(type, input(r, i, type, ReduceOp::sum)); });
      }
    }
  }
}

void check_alltoall(ringfuse::Context& ctx, Checker& checker, std::span<const std::size_t> counts,
                    std::span<const DataType> types, bool variable) {
  const int n = ctx.size();
  const int me = ctx.rank();
  // Rank i sends block_size(i, j) elements to rank j; element k of that block is input(i, j·P+k).
  constexpr std::size_t kStride = 1u << 24;
  for (DataType type : types) {
    for (std::size_t count : counts) {
      auto block_size = [&](int from, int to) {
        return variable ? count + static_cast<std::size_t>((from + 2 * to) % 3) : count;
      };
      std::vector<std::size_t> send_counts, recv_counts;
      for (int r = 0; r < n; ++r) {
        send_counts.push_back(block_size(me, r));
        recv_counts.push_back(block_size(r, me));
      }
      std::size_t send_total = 0, recv_total = 0;
      for (int r = 0; r < n; ++r) {
        send_total += send_counts[r];
        recv_total += recv_counts[r];
      }
      auto send = buffer(send_total, type);
      auto recv = buffer(recv_total, type);
      std::size_t at = 0;
      for (int to = 0; to < n; ++to) {
        for (std::size_t k = 0; k < send_counts[to]; ++k) {
          store(send.data(), at++, type,
                input(me, static_cast<std::size_t>(to) * kStride + k, type, ReduceOp::sum));
        }
      }
      if (variable) {
        ctx.alltoallv(send.data(), send_counts, recv.data(), recv_counts, type);
      } else {
        ctx.alltoall(send.data(), recv.data(), count, type);
      }
      std::size_t offset = 0;
      for (int from = 0; from < n; ++from) {
        check_all(checker,
                  fmt::format("{} {}[{}] block from rank {}", variable ? "alltoallv" : "alltoall",
                              ringfuse::to_string(type), recv_counts[from], from),
                  recv.data() + offset * ringfuse::element_size(type), recv_counts[from], type,
                  ReduceOp::sum, [&](std::size_t k) {
                    return stored(type, input(from, static_cast<std::size_t>(me) * kStride + k,
                                              type, ReduceOp::sum));
                  });
        offset += recv_counts[from];
      }
    }
  }
}

struct Departure {
  long after = -1;              // all-reduces done before leaving; -1: never leaves
  bool keep_process = false;    // destroy the Context but keep running (else return from main)
  bool keep_context = false;    // stall: keep the Context too, and just stop calling
  std::chrono::seconds linger{30};
};

int endless_allreduce(std::unique_ptr<ringfuse::Context>& ctx, std::size_t count,
                      std::size_t engine_tensors, const Departure& departure) {
  const int rank = ctx->rank();
  std::vector<float> data(count, 1.0f);
  // engine_tensors > 0: the same bytes as that many tensors through the engine, fused.
  std::vector<ringfuse::TensorView> tensors;
  for (std::size_t i = 0; i < engine_tensors; ++i) {
    const std::size_t begin = count * i / engine_tensors;
    const std::size_t end = count * (i + 1) / engine_tensors;
    tensors.push_back({data.data() + begin, DataType::f32,
                       {static_cast<std::int64_t>(end - begin)}});
  }
  for (long iteration = 0;; ++iteration) {
    if (iteration == departure.after) {
      if (departure.keep_context) {
        std::cout << "rank " << rank << ": stalling after " << iteration << " all-reduces"
                  << std::endl;
        std::this_thread::sleep_for(departure.linger);
        return 0;
      }
      if (!departure.keep_process) {
        std::cout << "rank " << rank << ": returning from main after " << iteration
                  << " all-reduces" << std::endl;
        return 0;  // main's Context goes with it, as in a program that simply ends early
      }
      ctx.reset();  // the public API's shutdown
      std::cout << "rank " << rank << ": destroyed its context after " << iteration
                << " all-reduces; lingering" << std::endl;
      std::this_thread::sleep_for(departure.linger);
      return 0;
    }
    if (tensors.empty()) {
      ctx->allreduce(data.data(), count, DataType::f32, ReduceOp::avg);
    } else {
      ctx->engine()
          .grouped_allreduce(fmt::format("endless.{}", iteration % 2), tensors,
                             {.op = ReduceOp::avg})
          .wait(std::chrono::seconds(120));
    }
    if (iteration == 0) std::cout << "rank " << rank << ": running" << std::endl;
  }
}

}  // namespace

/// Makes process_vm_readv / process_vm_writev fail with EPERM in this process from now on (a
/// seccomp filter, as a restrictive container profile would), so that its Context's probe of
/// the peers' memory fails.
bool deny_cross_memory() {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_process_vm_readv, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_process_vm_writev, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
  };
  sock_fprog program{static_cast<unsigned short>(std::size(filter)), filter};
  return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
         ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) == 0;
}

int main(int argc, char** argv) {
  CLI::App app{"Ringfuse multi-process collective check (one rank)"};
  std::string collective = "allreduce";
  std::string mode = "check";
  std::vector<std::size_t> counts{0, 1, 1009, 786433};
  std::string algos_text = "ring,tree,rhd";
  std::size_t endless_count = 1 << 22;
  int victim = 1;
  long after = 3;
  int linger_s = 30;
  app.add_option("--collective", collective,
                 "allreduce|broadcast|allgather|allgatherv|reducescatter|alltoall|alltoallv|"
                 "barrier");
  app.add_option("--counts", counts, "element counts to check")->delimiter(',');
  app.add_option("--algos", algos_text, "all-reduce algorithms to check");
  app.add_option("--mode", mode,
                 "check | endless (all-reduce until an error) | early-exit (--victim returns "
                 "from main after --after all-reduces) | leave (--victim destroys its Context "
                 "after --after all-reduces and lingers) | stall (--victim stops calling, "
                 "keeping its Context, for --linger-s)")
      ->check(CLI::IsMember({"check", "endless", "early-exit", "leave", "stall"}));
  app.add_option("--endless-count", endless_count, "elements per all-reduce in endless mode");
  std::size_t engine_tensors = 0;
  app.add_option("--engine-tensors", engine_tensors,
                 "endless mode: all-reduce the elements as this many tensors through the "
                 "engine (one fused group) instead of one blocking all-reduce");
  app.add_option("--victim", victim, "the rank that leaves (early-exit, leave) or stalls");
  app.add_option("--after", after, "all-reduces the victim does before leaving")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--linger-s", linger_s, "seconds the victim stays alive in leave mode")
      ->check(CLI::NonNegativeNumber);
  std::string split = "none";
  app.add_option("--split", split,
                 "check mode: run the checks on a child Context instead of the world (parity: "
                 "Context::split(rank % 2, rank))")
      ->check(CLI::IsMember({"none", "parity"}));
  int deny_cross_memory_on = -1;
  app.add_option("--deny-cross-memory-on", deny_cross_memory_on,
                 "this rank (RINGFUSE_RANK) may not read or write other processes' memory");
  CLI11_PARSE(app, argc, argv);

  if (const char* own = std::getenv("RINGFUSE_RANK");
      own != nullptr && std::atoi(own) == deny_cross_memory_on && !deny_cross_memory()) {
    std::cerr << "cannot install the seccomp filter: " << std::strerror(errno) << std::endl;
    return 2;
  }
  std::unique_ptr<ringfuse::Context> ctx;
  try {
    ctx = ringfuse::init();
  } catch (const std::exception& e) {
    std::cerr << "init failed: " << e.what() << std::endl;
    return 2;
  }
  const int rank = ctx->rank();
  try {
    if (mode != "check") {
      Departure departure;
      if (mode != "endless" && rank == victim) {
        departure.after = after;
        departure.keep_process = mode == "leave";
        departure.keep_context = mode == "stall";
        departure.linger = std::chrono::seconds(linger_s);
      }
      return endless_allreduce(ctx, endless_count, engine_tensors, departure);
    }

    std::vector<Algorithm> algos;
    for (const auto& name : {"ring", "tree", "rhd"}) {
      if (algos_text.find(name) != std::string::npos) {
        algos.push_back(name == std::string("ring")   ? Algorithm::ring
                        : name == std::string("tree") ? Algorithm::tree
                                                      : Algorithm::rhd);
      }
    }
    algos.push_back(Algorithm::automatic);
    // The references are computed from the ranks and size of the Context checked, so a child
    // is checked exactly as a world of its size would be.
    std::unique_ptr<ringfuse::Context> child;
    if (split == "parity") {
      child = ctx->split(rank % 2, rank);
      std::cout << fmt::format("rank {}: {} is rank {} of {}", rank, child->label(),
                               child->rank(), child->size())
                << std::endl;
    }
    ringfuse::Context& group = child ? *child : *ctx;
    if (child) {
      // Which backend runs the child's collectives: a root outside the child is refused
      // before any communication, by the backend that would have run the broadcast.
      float probe = 0;
      try {
        child->broadcast(&probe, 1, DataType::f32, child->size());
      } catch (const ringfuse::Error& e) {
        std::cout << fmt::format("rank {}: {} runs on {}", rank, child->label(), e.backend())
                  << std::endl;
      }
    }
    Checker checker{rank};
    const std::span<const DataType> types(ringfuse::kAllDataTypes);
    const std::span<const ReduceOp> ops(ringfuse::kAllReduceOps);
    if (collective == "allreduce") {
      check_allreduce(group, checker, counts, types, ops, algos);
    } else if (collective == "reducescatter") {
      check_reducescatter(group, checker, counts, types, ops);
    } else if (collective == "broadcast") {
      check_broadcast(group, checker, counts, types);
    } else if (collective == "allgather" || collective == "allgatherv") {
      check_allgather(group, checker, counts, types, collective == "allgatherv");
    } else if (collective == "alltoall" || collective == "alltoallv") {
      check_alltoall(group, checker, counts, types, collective == "alltoallv");
    } else if (collective == "barrier") {
      for (int i = 0; i < 50; ++i) group.barrier();
      checker.expect(true, "barrier");
    } else {
      std::cerr << "unknown collective '" << collective << "'\n";
      return 2;
    }
    if (child) {
      child.reset();   // before its parent
      ctx->barrier();  // under mpirun rank 0 hosts the store: nobody leaves before all are done
    }
    ctx->barrier();
    std::cout << fmt::format("rank {}: {} {} checks, {} failed", rank, collective, checker.checks,
                             checker.failures)
              << std::endl;
    return checker.failures == 0 ? 0 : 1;
  } catch (const ringfuse::Error& e) {
    std::cerr << "rank " << rank << ": ERROR " << e.what() << std::endl;
    return 3;
  }
}
