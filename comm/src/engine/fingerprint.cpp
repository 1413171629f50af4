#include "engine/fingerprint.hpp"

#include <bit>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace ringfuse::engine {

std::string_view to_string(OpType op) {
  switch (op) {
    case OpType::allreduce: return "allreduce";
    case OpType::allgather: return "allgather";
    case OpType::broadcast: return "broadcast";
    case OpType::alltoall: return "alltoall";
    case OpType::reducescatter: return "reducescatter";
    case OpType::barrier: return "barrier";
    case OpType::alltoallv: return "alltoallv";
    case OpType::reducescatterv: return "reducescatterv";
  }
  return "?";
}

std::size_t Fingerprint::numel() const {
  std::size_t n = 1;
  for (const auto dim : shape) n *= static_cast<std::size_t>(dim);
  return n;
}

bool Fingerprint::matches(const Fingerprint& other) const {
  if (op_type != other.op_type || dtype != other.dtype || op != other.op ||
      compression != other.compression || root != other.root || device != other.device ||
      prescale != other.prescale || postscale != other.postscale || name != other.name ||
      shape.size() != other.shape.size()) {
    return false;
  }
  for (std::size_t i = rows_differ() ? 1 : 0; i < shape.size(); ++i) {
    if (shape[i] != other.shape[i]) return false;
  }
  return true;
}

std::string Fingerprint::describe(bool with_name) const {
  std::string text = with_name ? fmt::format("'{}' ", name) : std::string();
  if (op_type == OpType::barrier) return text + "barrier";
  text += fmt::format("{}[{}]", ringfuse::to_string(dtype), fmt::join(shape, ","));
  switch (op_type) {
    case OpType::allreduce:
    case OpType::reducescatter:
    case OpType::reducescatterv:
      text += fmt::format(" {}", ringfuse::to_string(op));
      if (op_type != OpType::allreduce) text += fmt::format(" {}", to_string(op_type));
      break;
    case OpType::broadcast: text += fmt::format(" broadcast root {}", root); break;
    default: text += fmt::format(" {}", to_string(op_type)); break;
  }
  if (prescale != 1.0) text += fmt::format(" prescale {}", prescale);
  if (postscale != 1.0) text += fmt::format(" postscale {}", postscale);
  if (compression == Compression::fp16) text += " (fp16 on the wire)";
  if (compression == Compression::bf16) text += " (bf16 on the wire)";
  if (device == Device::cuda) text += " on cuda";
  return text;
}

void Fingerprint::encode(ByteWriter& out) const {
  out.put(op_type);
  out.put(dtype);
  out.put(op);
  out.put(compression);
  out.put(root);
  out.put(device);
  out.put(prescale);
  out.put(postscale);
  out.put(static_cast<std::uint32_t>(shape.size()));
  for (const auto dim : shape) out.put(dim);
  out.put_string(name);
  out.put(static_cast<std::uint32_t>(splits.size()));
  for (const auto rows : splits) out.put(rows);
}

Fingerprint Fingerprint::decode(ByteReader& in) {
  Fingerprint fp;
  fp.op_type = in.get<OpType>();
  fp.dtype = in.get<DataType>();
  fp.op = in.get<ReduceOp>();
  fp.compression = in.get<Compression>();
  fp.root = in.get<std::int32_t>();
  fp.device = in.get<Device>();
  fp.prescale = in.get<double>();
  fp.postscale = in.get<double>();
  const auto dims = in.get<std::uint32_t>();
  if (dims > 64) throw Error(ErrorKind::protocol, "ringfuse engine: bad fingerprint");
  for (std::uint32_t i = 0; i < dims; ++i) fp.shape.push_back(in.get<std::int64_t>());
  fp.name = in.get_string();
  const auto ranks = in.get<std::uint32_t>();
  if (ranks > (1u << 20)) throw Error(ErrorKind::protocol, "ringfuse engine: bad fingerprint");
  for (std::uint32_t i = 0; i < ranks; ++i) fp.splits.push_back(in.get<std::int64_t>());
  return fp;
}

std::size_t Fingerprint::hash() const {
  // FNV-1a style mixing of the small fields, then the name's and the shape's hashes.
  std::size_t h = 0xcbf29ce484222325ULL;
  const auto mix = [&h](std::uint64_t value) { h = (h ^ value) * 0x100000001b3ULL; };
  mix(static_cast<std::uint64_t>(op_type) | static_cast<std::uint64_t>(dtype) << 8 |
      static_cast<std::uint64_t>(op) << 16 | static_cast<std::uint64_t>(compression) << 24 |
      static_cast<std::uint64_t>(static_cast<std::uint32_t>(root)) << 32);
  mix(static_cast<std::uint64_t>(device));
  // The scales' bits, not std::hash<double> (a call into the byte hash for each, per tensor
  // per step); 0.0 and -0.0 compare equal, so they hash alike.
  const auto bits = [](double value) {
    return value == 0.0 ? std::uint64_t{0} : std::bit_cast<std::uint64_t>(value);
  };
  mix(bits(prescale));
  mix(bits(postscale));
  mix(std::hash<std::string>{}(name));
  for (std::size_t i = rows_differ() ? 1 : 0; i < shape.size(); ++i) {
    mix(static_cast<std::uint64_t>(shape[i]));
  }
  mix(shape.size());
  return h;
}

}  // namespace ringfuse::engine
