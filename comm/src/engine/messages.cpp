#include "engine/messages.hpp"

#include <algorithm>

#include "engine/wire.hpp"

namespace ringfuse::engine {
namespace {

// Every announcement and ready entry takes at least this many bytes (u64 seq + u8 tag), so a
// count off the wire is only trusted that far for reserve(): a corrupt count must end in
// Error(protocol) from the reader, not in a multi-gigabyte allocation (std::bad_alloc).
constexpr std::size_t kMinEntryBytes = 9;

std::size_t plausible(std::uint32_t count, std::size_t message_bytes) {
  return std::min<std::size_t>(count, message_bytes / kMinEntryBytes);
}

}  // namespace

std::vector<std::uint8_t> CycleMessage::encode() const {
  ByteWriter out;
  out.put(static_cast<std::uint8_t>((join ? 1 : 0) | (shutdown ? 2 : 0) | (busy ? 4 : 0) |
                                    (indexed ? 8 : 0)));
  if (indexed) {
    out.put(first_seq);
    out.put(static_cast<std::uint32_t>(indices.size()));
    for (const auto index : indices) out.put(index);
  }
  out.put(static_cast<std::uint32_t>(entries.size()));
  for (const auto& entry : entries) {
    out.put(entry.seq);
    if (entry.cache_index) {
      out.put(std::uint8_t{0});
      out.put(*entry.cache_index);
    } else {
      out.put(std::uint8_t{1});
      entry.fp.encode(out);
    }
  }
  return std::move(out.bytes());
}

CycleMessage CycleMessage::decode(const std::vector<std::uint8_t>& bytes,
                                  const ResponseCache& cache) {
  ByteReader in(bytes.data(), bytes.size());
  CycleMessage message;
  const auto flags = in.get<std::uint8_t>();
  message.join = (flags & 1) != 0;
  message.shutdown = (flags & 2) != 0;
  message.busy = (flags & 4) != 0;
  message.indexed = (flags & 8) != 0;
  if (message.indexed) {
    message.first_seq = in.get<std::uint64_t>();
    const auto n = in.get<std::uint32_t>();
    message.indices.reserve(std::min<std::size_t>(n, bytes.size() / sizeof(std::uint32_t)));
    for (std::uint32_t i = 0; i < n; ++i) {
      message.indices.push_back(in.get<std::uint32_t>());
      (void)cache.at(message.indices.back());  // an empty slot: the caches diverged
    }
  }
  const auto count = in.get<std::uint32_t>();
  message.entries.reserve(plausible(count, bytes.size()));
  for (std::uint32_t i = 0; i < count; ++i) {
    Announcement entry;
    entry.seq = in.get<std::uint64_t>();
    if (in.get<std::uint8_t>() == 0) {
      entry.cache_index = in.get<std::uint32_t>();
      entry.fp = cache.at(*entry.cache_index);
    } else {
      entry.fp = Fingerprint::decode(in);
    }
    message.entries.push_back(std::move(entry));
  }
  return message;
}

std::vector<std::uint8_t> CycleResponse::encode() const {
  ByteWriter out;
  out.put(status);
  out.put_string(message);
  out.put(static_cast<std::uint32_t>(ready.size()));
  for (const auto& entry : ready) {
    out.put(entry.seq);
    out.put(entry.kind);
    switch (entry.kind) {
      case ReadyEntry::Kind::cached: out.put(entry.cache_index); break;
      case ReadyEntry::Kind::full:
        entry.fp.encode(out);
        out.put(static_cast<std::uint32_t>(entry.dim0.size()));
        for (const auto d : entry.dim0) out.put(d);
        break;
      case ReadyEntry::Kind::error:
        entry.fp.encode(out);
        out.put_string(entry.error);
        break;
    }
  }
  out.put(static_cast<std::uint32_t>(joined.size()));
  for (const auto r : joined) out.put(r);
  out.put(static_cast<std::uint8_t>((join_done ? 1 : 0) | (world_busy ? 2 : 0) |
                                    (indexed_released ? 4 : 0)));
  out.put(last_joined);
  if (indexed_released) out.put(*indexed_released);
  return std::move(out.bytes());
}

CycleResponse CycleResponse::decode(const std::vector<std::uint8_t>& bytes,
                                    const ResponseCache& cache) {
  ByteReader in(bytes.data(), bytes.size());
  CycleResponse response;
  response.status = in.get<Status>();
  response.message = in.get_string();
  const auto count = in.get<std::uint32_t>();
  response.ready.reserve(plausible(count, bytes.size()));
  for (std::uint32_t i = 0; i < count; ++i) {
    ReadyEntry entry;
    entry.seq = in.get<std::uint64_t>();
    entry.kind = in.get<ReadyEntry::Kind>();
    switch (entry.kind) {
      case ReadyEntry::Kind::cached:
        entry.cache_index = in.get<std::uint32_t>();
        entry.fp = cache.at(entry.cache_index);
        break;
      case ReadyEntry::Kind::full: {
        entry.fp = Fingerprint::decode(in);
        const auto n = in.get<std::uint32_t>();
        for (std::uint32_t j = 0; j < n; ++j) entry.dim0.push_back(in.get<std::int64_t>());
        break;
      }
      case ReadyEntry::Kind::error:
        entry.fp = Fingerprint::decode(in);
        entry.error = in.get_string();
        break;
    }
    response.ready.push_back(std::move(entry));
  }
  const auto joined = in.get<std::uint32_t>();
  for (std::uint32_t i = 0; i < joined; ++i) response.joined.push_back(in.get<std::int32_t>());
  const auto flags = in.get<std::uint8_t>();
  response.join_done = (flags & 1) != 0;
  response.world_busy = (flags & 2) != 0;
  response.last_joined = in.get<std::int32_t>();
  if ((flags & 4) != 0) response.indexed_released = in.get<std::uint32_t>();
  return response;
}

}  // namespace ringfuse::engine
