#include "native_impl.hpp"

#include <fmt/format.h>

namespace ringfuse::perf {
namespace {

class Native final : public Implementation {
 public:
  Native(Context& context, Algorithm algo) : context_(context), algo_(algo) {}

  std::string name() const override { return "ringfuse"; }
  bool is_ours() const override { return true; }

  std::string algo(const CaseSpec& spec) const override {
    // --algo only steers all-reduce; the other collectives have one algorithm each.
    return spec.collective == Collective::allreduce ? std::string(to_string(algo_)) : "native";
  }

  std::string unsupported(const CaseSpec& spec) const override {
    if (reduces(spec.collective) && !is_defined(spec.type, spec.op)) {
      return fmt::format("{} of {} is not defined", to_string(spec.op), to_string(spec.type));
    }
    return {};
  }

  void run(const CaseSpec& spec, Buffers& b) override {
    const Layout& l = spec.layout;
    switch (spec.collective) {
      case Collective::allreduce:
        context_.allreduce(b.output(), l.count, spec.type, spec.op, algo_);
        break;
      case Collective::broadcast: context_.broadcast(b.output(), l.count, spec.type, spec.root); break;
      case Collective::allgather: context_.allgather(b.input(), b.output(), l.block, spec.type); break;
      case Collective::reducescatter:
        context_.reducescatter(b.input(), b.output(), l.block, spec.type, spec.op);
        break;
      case Collective::alltoall: context_.alltoall(b.input(), b.output(), l.block, spec.type); break;
      case Collective::barrier: context_.barrier(); break;
    }
  }

  void barrier() override { context_.barrier(); }

 private:
  Context& context_;
  Algorithm algo_;
};

}  // namespace

std::unique_ptr<Implementation> make_native(Context& context, Algorithm algo) {
  return std::make_unique<Native>(context, algo);
}

}  // namespace ringfuse::perf
