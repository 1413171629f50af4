#include "gloo_peer.hpp"

#ifdef RINGFUSE_PERF_HAVE_GLOO

#include <climits>
#include <cstring>

#include <gloo/allreduce_halving_doubling.h>
#include <gloo/allreduce_ring_chunked.h>
#include <gloo/barrier_all_to_all.h>
#include <gloo/rendezvous/context.h>
#include <gloo/transport/tcp/device.h>
#include <gloo/types.h>

#include "gloo_store_adapter.hpp"

namespace ringfuse::perf {
namespace {

enum class GlooAlgo { ring_chunked, halving_doubling };

// What both algorithm objects share: the connected context (and the store it met through).
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
    case ReduceOp::avg: break;
  }
  return nullptr;
}

template <class T>
std::unique_ptr<gloo::Algorithm> build(GlooAlgo which, const std::shared_ptr<gloo::Context>& ctx,
                                       void* data, int count, ReduceOp op) {
  std::vector<T*> ptrs{static_cast<T*>(data)};
  if (which == GlooAlgo::ring_chunked) {
    return std::make_unique<gloo::AllreduceRingChunked<T>>(ctx, ptrs, count, reduction<T>(op));
  }
  return std::make_unique<gloo::AllreduceHalvingDoubling<T>>(ctx, ptrs, count, reduction<T>(op));
}

class GlooPeer final : public Implementation {
 public:
  GlooPeer(std::shared_ptr<GlooShared> shared, GlooAlgo which)
      : shared_(std::move(shared)), which_(which) {}

  std::string name() const override { return "gloo"; }
  std::string algo(const CaseSpec& /*spec*/) const override {
    return which_ == GlooAlgo::ring_chunked ? "ring_chunked" : "halving_doubling";
  }

  std::string unsupported(const CaseSpec& spec) const override {
    if (spec.collective != Collective::allreduce) return "the Gloo peer measures allreduce only";
    if (spec.type == DataType::bf16) return "Gloo has no bf16";
    if (spec.op == ReduceOp::avg) return "Gloo has no average operator";
    if (spec.layout.count > static_cast<std::size_t>(INT_MAX)) return "count exceeds Gloo's int";
    return {};
  }

  void prepare(const CaseSpec& spec, Buffers& b) override {
    // Built once per size, outside the timed loop: Gloo allocates its inbox and registers the
    // buffers with the pairs here, as a real user would do once per tensor.
    const int count = static_cast<int>(spec.layout.count);
    void* data = b.output();
    const auto& ctx = shared_->context;
    switch (spec.type) {
      case DataType::f16: algorithm_ = build<gloo::float16>(which_, ctx, data, count, spec.op); break;
      case DataType::f32: algorithm_ = build<float>(which_, ctx, data, count, spec.op); break;
      case DataType::f64: algorithm_ = build<double>(which_, ctx, data, count, spec.op); break;
      case DataType::i8: algorithm_ = build<std::int8_t>(which_, ctx, data, count, spec.op); break;
      case DataType::u8: algorithm_ = build<std::uint8_t>(which_, ctx, data, count, spec.op); break;
      case DataType::i32: algorithm_ = build<std::int32_t>(which_, ctx, data, count, spec.op); break;
      case DataType::i64: algorithm_ = build<std::int64_t>(which_, ctx, data, count, spec.op); break;
      case DataType::bf16: break;  // rejected by unsupported()
    }
    barrier_ = std::make_unique<gloo::BarrierAllToAll>(shared_->context);
  }

  void run(const CaseSpec& /*spec*/, Buffers& /*b*/) override { algorithm_->run(); }
  void barrier() override { barrier_->run(); }
  void finish() override {
    algorithm_.reset();
    barrier_.reset();
  }

 private:
  std::shared_ptr<GlooShared> shared_;
  GlooAlgo which_;
  std::unique_ptr<gloo::Algorithm> algorithm_;
  std::unique_ptr<gloo::BarrierAllToAll> barrier_;
};

}  // namespace

GlooPeers make_gloo_peers(const GlooWorld& world) {
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
  } else {
    peers.unavailable = "a world of one has nothing to measure";
    return peers;
  }
  peers.impls.push_back(std::make_unique<GlooPeer>(shared, GlooAlgo::ring_chunked));
  peers.impls.push_back(std::make_unique<GlooPeer>(shared, GlooAlgo::halving_doubling));
  return peers;
}

}  // namespace ringfuse::perf

#else

namespace ringfuse::perf {

GlooPeers make_gloo_peers(const GlooWorld& /*world*/) {
  return {{}, "built without Gloo (install libgloo-dev and reconfigure)"};
}

}  // namespace ringfuse::perf

#endif
