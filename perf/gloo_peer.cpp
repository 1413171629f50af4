#include "gloo_peer.hpp"

#ifdef RINGFUSE_PERF_HAVE_GLOO

#include <climits>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string_view>
#include <type_traits>

#include <gloo/allgather.h>
#include <gloo/allgather_ring.h>
#include <gloo/allreduce_halving_doubling.h>
#include <gloo/allreduce_ring_chunked.h>
#include <gloo/alltoall.h>
#include <gloo/barrier.h>
#include <gloo/barrier_all_to_all.h>
#include <gloo/broadcast.h>
#include <gloo/broadcast_one_to_all.h>
#include <gloo/reduce_scatter.h>
#include <gloo/rendezvous/context.h>
#include <gloo/transport/tcp/device.h>
#include <gloo/types.h>

#include "gloo_store_adapter.hpp"

namespace ringfuse::perf {
namespace {

// One Gloo algorithm for one collective (the table in gloo_peer.hpp).
enum class Variant : std::uint8_t {
  none,
  allreduce_ring_chunked,
  allreduce_halving_doubling,
  broadcast_binomial_tree,
  broadcast_one_to_all,
  allgather_ring,
  allgather_ring_legacy,
  reducescatter_halving_doubling,
  alltoall_pairwise,
  barrier_dissemination,
  barrier_all_to_all,
};

Variant variant_for(Collective collective, int slot) {
  const bool first = slot == 0;
  switch (collective) {
    case Collective::allreduce:
      return first ? Variant::allreduce_ring_chunked : Variant::allreduce_halving_doubling;
    case Collective::broadcast:
      return first ? Variant::broadcast_binomial_tree : Variant::broadcast_one_to_all;
    case Collective::allgather:
      return first ? Variant::allgather_ring : Variant::allgather_ring_legacy;
    case Collective::reducescatter:
      return first ? Variant::reducescatter_halving_doubling : Variant::none;
    case Collective::alltoall: return first ? Variant::alltoall_pairwise : Variant::none;
    case Collective::barrier:
      return first ? Variant::barrier_dissemination : Variant::barrier_all_to_all;
  }
  return Variant::none;
}

std::string_view label(Variant v) {
  switch (v) {
    case Variant::none: return "(none)";
    case Variant::allreduce_ring_chunked: return "ring_chunked";
    case Variant::allreduce_halving_doubling:
    case Variant::reducescatter_halving_doubling: return "halving_doubling";
    case Variant::broadcast_binomial_tree: return "binomial_tree";
    case Variant::broadcast_one_to_all: return "one_to_all";
    case Variant::allgather_ring: return "ring";
    case Variant::allgather_ring_legacy: return "ring_legacy";
    case Variant::alltoall_pairwise: return "pairwise";
    case Variant::barrier_dissemination: return "dissemination";
    case Variant::barrier_all_to_all: return "all_to_all";
  }
  return "?";
}

// The Algorithm-class implementations keep byte counts and offsets in int.
bool int_sized(Variant v) {
  return v == Variant::allreduce_ring_chunked || v == Variant::allreduce_halving_doubling ||
         v == Variant::allgather_ring_legacy || v == Variant::reducescatter_halving_doubling;
}

// What the slots share: the connected context (and the store it met through).
struct GlooShared {
  std::unique_ptr<GlooStoreAdapter> store;
  std::shared_ptr<gloo::rendezvous::Context> context;
};

template <class T>
const gloo::ReductionFunction<T>* reduction(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return gloo::ReductionFunction<T>::sum;
    case ReduceOp::prod: return gloo::ReductionFunction<T>::product;
    case ReduceOp::min: return gloo::ReductionFunction<T>::min;
    case ReduceOp::max: return gloo::ReductionFunction<T>::max;
    case ReduceOp::avg:
    case ReduceOp::band:
    case ReduceOp::bor:
    case ReduceOp::bxor: break;
  }
  return nullptr;
}

// Gloo's element type for ours. bf16 has none; it only ever travels as 16-bit words (collectives
// that reduce reject it in unsupported()).
template <class F>
void with_gloo_type(DataType type, F&& f) {
  switch (type) {
    case DataType::f16: return f(std::type_identity<gloo::float16>{});
    case DataType::bf16: return f(std::type_identity<std::uint16_t>{});
    case DataType::f32: return f(std::type_identity<float>{});
    case DataType::f64: return f(std::type_identity<double>{});
    case DataType::i8: return f(std::type_identity<std::int8_t>{});
    case DataType::u8: return f(std::type_identity<std::uint8_t>{});
    case DataType::i32: return f(std::type_identity<std::int32_t>{});
    case DataType::i64: return f(std::type_identity<std::int64_t>{});
    case DataType::i16: return f(std::type_identity<std::int16_t>{});
    // Gloo has no bool; it only ever travels as bytes (reductions: see unsupported()).
    case DataType::boolean: return f(std::type_identity<std::uint8_t>{});
  }
}

template <class A>
std::function<void()> algorithm(std::shared_ptr<A> a) {
  return [a = std::move(a)] { a->run(); };
}

// Builds the timed call on this case's buffers. `scratch` is reduce-scatter's working copy of
// the input (Gloo's reduce-scatter works in place on a full-size buffer).
template <class T>
std::function<void()> build(Variant v, const std::shared_ptr<gloo::Context>& ctx,
                            const CaseSpec& spec, Buffers& b, std::byte* scratch) {
  const Layout& l = spec.layout;
  T* out = static_cast<T*>(b.output());
  // Gloo's options take non-const pointers; it only reads the input.
  T* in = static_cast<T*>(const_cast<void*>(b.input()));
  switch (v) {
    case Variant::none: break;
    case Variant::allreduce_ring_chunked:
      return algorithm(std::make_shared<gloo::AllreduceRingChunked<T>>(
          ctx, std::vector<T*>{out}, static_cast<int>(l.count), reduction<T>(spec.op)));
    case Variant::allreduce_halving_doubling:
      return algorithm(std::make_shared<gloo::AllreduceHalvingDoubling<T>>(
          ctx, std::vector<T*>{out}, static_cast<int>(l.count), reduction<T>(spec.op)));
    case Variant::broadcast_binomial_tree: {
      // In place on every rank, as ours and MPI_Bcast run.
      auto o = std::make_shared<gloo::BroadcastOptions>(ctx);
      o->setOutput(out, l.count);
      o->setRoot(spec.root);
      return [o] { gloo::broadcast(*o); };
    }
    case Variant::broadcast_one_to_all:
      return algorithm(std::make_shared<gloo::BroadcastOneToAll<T>>(ctx, std::vector<T*>{out},
                                                                    l.count, spec.root));
    case Variant::allgather_ring: {
      auto o = std::make_shared<gloo::AllgatherOptions>(ctx);
      o->setInput(in, l.block);
      o->setOutput(out, l.count);
      return [o] { gloo::allgather(*o); };
    }
    case Variant::allgather_ring_legacy:
      return algorithm(std::make_shared<gloo::AllgatherRing<T>>(
          ctx, std::vector<const T*>{in}, out, static_cast<int>(l.block)));
    case Variant::reducescatter_halving_doubling:
      // Each rank's block lands at the front of the scratch buffer; finish() moves it to the
      // output the check reads.
      return algorithm(std::make_shared<gloo::ReduceScatterHalvingDoubling<T>>(
          ctx, std::vector<T*>{reinterpret_cast<T*>(scratch)}, static_cast<int>(l.count),
          std::vector<int>(static_cast<std::size_t>(spec.size), static_cast<int>(l.block)),
          reduction<T>(spec.op)));
    case Variant::alltoall_pairwise: {
      auto o = std::make_shared<gloo::AlltoallOptions>(ctx);
      o->setInput(in, l.count);
      o->setOutput(out, l.count);
      return [o] { gloo::alltoall(*o); };
    }
    case Variant::barrier_dissemination: {
      auto o = std::make_shared<gloo::BarrierOptions>(ctx);
      return [o] { gloo::barrier(*o); };
    }
    case Variant::barrier_all_to_all:
      return algorithm(std::make_shared<gloo::BarrierAllToAll>(ctx));
  }
  return {};
}

class GlooPeer final : public Implementation {
 public:
  GlooPeer(std::shared_ptr<GlooShared> shared, int slot) : shared_(std::move(shared)), slot_(slot) {}

  std::string name() const override { return "gloo"; }
  std::string algo(const CaseSpec& spec) const override {
    return std::string(label(variant_for(spec.collective, slot_)));
  }

  std::string unsupported(const CaseSpec& spec) const override {
    const Variant v = variant_for(spec.collective, slot_);
    if (v == Variant::none) {
      if (spec.collective == Collective::reducescatter) {
        return "Gloo has one reduce-scatter, ReduceScatterHalvingDoubling (the halving_doubling "
               "rows)";
      }
      return "Gloo has one all-to-all, gloo::alltoall (the pairwise rows; gloo::alltoallv runs "
             "the same exchange)";
    }
    if (reduces(spec.collective)) {
      if (spec.type == DataType::bf16) return "Gloo has no bf16 reductions";
      if (spec.type == DataType::boolean) return "Gloo has no bool reductions";
      if (spec.op == ReduceOp::avg) return "Gloo has no average operator";
      if (is_bitwise(spec.op)) return "Gloo has no bitwise operators";
    }
    if (int_sized(v) && spec.layout.bytes > static_cast<std::size_t>(INT_MAX)) {
      return "size exceeds the int Gloo counts it in";
    }
    return {};
  }

  void prepare(const CaseSpec& spec, Buffers& b) override {
    // Built once per size, outside the timed loop: Gloo allocates its inbox and registers the
    // buffers with the pairs here, as a real user would do once per tensor.
    const Variant v = variant_for(spec.collective, slot_);
    const std::size_t es = element_size(spec.type);
    if (v == Variant::reducescatter_halving_doubling) {
      scratch_ = AlignedBytes(spec.layout.input_count * es);  // touched now, not in the loop
      input_ = b.input();
      refresh_bytes_ = spec.layout.input_count * es;
      output_ = b.output();
      result_bytes_ = spec.layout.output_count * es;
    }
    const std::shared_ptr<gloo::Context> ctx = shared_->context;
    with_gloo_type(spec.type, [&]<class T>(std::type_identity<T>) {
      run_ = build<T>(v, ctx, spec, b, scratch_.data());
    });
    barrier_ = std::make_unique<gloo::BarrierAllToAll>(ctx);
  }

  void run(const CaseSpec& /*spec*/, Buffers& /*b*/) override { run_(); }

  void barrier() override {
    if (refresh_bytes_ > 0) {
      // Untimed, before each iteration: Gloo's reduce-scatter overwrote its input last time, so
      // it starts again from the pristine input (what Buffers::restore() does for the in-place
      // collectives). Between two barriers: the first makes sure no peer is still receiving
      // from this buffer, the second lines the ranks up after the copy.
      barrier_->run();
      std::memcpy(scratch_.data(), input_, refresh_bytes_);
    }
    barrier_->run();
  }

  void finish() override {
    // After the last timed iteration and before the check reads the output.
    if (result_bytes_ > 0) std::memcpy(output_, scratch_.data(), result_bytes_);
    run_ = {};
    barrier_.reset();
    scratch_ = AlignedBytes();
    input_ = nullptr;
    output_ = nullptr;
    refresh_bytes_ = result_bytes_ = 0;
  }

 private:
  std::shared_ptr<GlooShared> shared_;
  int slot_;
  std::function<void()> run_;
  std::unique_ptr<gloo::BarrierAllToAll> barrier_;
  // Reduce-scatter only.
  AlignedBytes scratch_;
  const void* input_ = nullptr;
  void* output_ = nullptr;
  std::size_t refresh_bytes_ = 0;
  std::size_t result_bytes_ = 0;
};

// Gloo's TCP pair (Debian's 0.0~git20220518) sizes a socket's SO_SNDBUF only in
// Pair::send(Op&), the path of pinned-buffer sends (the Algorithm classes), to that message's
// size and only upwards; the first message on a pair is a small notification (52 bytes, which
// the kernel rounds up to its minimum), and sends to unbound buffers (gloo::broadcast,
// gloo::allgather, gloo::alltoall) never resize it. Setting SO_SNDBUF also switches off the
// kernel's send-buffer autotuning, so a socket that only ever carries unbound-buffer traffic
// moves one ~64 KiB segment per delayed ACK (~40-47 ms): gloo::alltoall at ~3 MB/s here, and the
// options-API rows otherwise depend on which pinned-buffer rows ran before them. One pinned-buffer
// send of Gloo's own cap (kMaxSendBufferSize, 32 MiB) from every rank leaves every socket where
// Gloo's sizing leaves it after any large send: the same, best, state for every row.
// RINGFUSE_PERF_GLOO_UNTUNED=1 skips it, to see Gloo's sockets as it leaves them.
void grow_send_buffers(const std::shared_ptr<gloo::Context>& ctx) {
  const char* untuned = std::getenv("RINGFUSE_PERF_GLOO_UNTUNED");
  if (untuned != nullptr && std::string_view(untuned) == "1") return;
  std::vector<char> bytes(std::size_t{32} << 20);
  for (int root = 0; root < ctx->size; ++root) {
    gloo::BroadcastOneToAll<char> grow(ctx, std::vector<char*>{bytes.data()}, bytes.size(), root);
    grow.run();
  }
}

}  // namespace

GlooPeers make_gloo_peers(const PeerWorld& world) {
  GlooPeers peers;
  if (world.size > 1 && world.store_host.empty()) {
    peers.unavailable = "no rendezvous store to meet through";
    return peers;
  }
  auto shared = std::make_shared<GlooShared>();
  shared->context = std::make_shared<gloo::rendezvous::Context>(world.rank, world.size);
  shared->context->setTimeout(world.timeout);
  if (world.size > 1) {
    shared->store = std::make_unique<GlooStoreAdapter>(world.store_host, world.store_port,
                                                       world.key_prefix, world.timeout,
                                                       world.job_secret);
    gloo::transport::tcp::attr attr;
    attr.hostname = shared->store->local_address();
    auto device = gloo::transport::tcp::CreateDevice(attr);
    shared->context->connectFullMesh(*shared->store, device);
    grow_send_buffers(shared->context);
  } else {
    peers.unavailable = "a world of one has nothing to measure";
    return peers;
  }
  peers.impls.push_back(std::make_unique<GlooPeer>(shared, 0));
  peers.impls.push_back(std::make_unique<GlooPeer>(shared, 1));
  return peers;
}

}  // namespace ringfuse::perf

#else

namespace ringfuse::perf {

GlooPeers make_gloo_peers(const PeerWorld& /*world*/) {
  return {{}, "built without Gloo (install libgloo-dev and reconfigure)"};
}

}  // namespace ringfuse::perf

#endif
