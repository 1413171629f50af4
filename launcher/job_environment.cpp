#include "job_environment.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string_view>
#include <utility>

#include "ringfuse/error.hpp"

extern char** environ;

namespace ringfuse::launcher {
namespace {

// Every variable the contract sets. An inherited value of any of these (say ringfuse-run
// started from inside another job) would contradict ours, so it is dropped rather than kept.
constexpr std::array<std::string_view, 23> kContractVariables = {
    "RINGFUSE_RANK",       "RINGFUSE_SIZE",       "RINGFUSE_LOCAL_RANK", "RINGFUSE_LOCAL_SIZE",
    "RINGFUSE_CROSS_RANK", "RINGFUSE_CROSS_SIZE", "RINGFUSE_STORE_ADDR", "RINGFUSE_JOB_ID",
    "RINGFUSE_JOB_SECRET", "RANK",                "WORLD_SIZE",          "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",    "GROUP_RANK",          "GROUP_WORLD_SIZE",    "MASTER_ADDR",
    "MASTER_PORT",         "HOROVOD_RANK",        "HOROVOD_SIZE",        "HOROVOD_LOCAL_RANK",
    "HOROVOD_LOCAL_SIZE",  "HOROVOD_CROSS_RANK",  "HOROVOD_CROSS_SIZE",
};

bool is_contract_entry(std::string_view entry) {
  return is_contract_variable(entry.substr(0, entry.find('=')));
}

}  // namespace

bool is_contract_variable(std::string_view name) {
  return std::find(kContractVariables.begin(), kContractVariables.end(), name) !=
         kContractVariables.end();
}

std::string random_hex(std::size_t bytes) {
  std::ifstream urandom("/dev/urandom", std::ios::binary);
  std::string raw(bytes, '\0');
  if (!urandom || !urandom.read(raw.data(), static_cast<std::streamsize>(bytes))) {
    throw Error(ErrorKind::system,
                std::string("cannot read /dev/urandom for the job id/secret: ") +
                    std::strerror(errno));
  }
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(bytes * 2);
  for (const char c : raw) {
    const auto byte = static_cast<unsigned char>(c);
    hex.push_back(kDigits[byte >> 4]);
    hex.push_back(kDigits[byte & 0xf]);
  }
  return hex;
}

JobIdentity JobIdentity::generate() {
  // 64 bits tell concurrent jobs apart; the secret gets 256 bits because it is a credential.
  return JobIdentity{random_hex(8), random_hex(32)};
}

JobEnvironment::JobEnvironment(WorldLayout layout, std::string store_host,
                               std::uint16_t store_port, TorchMaster torch_master,
                               JobIdentity identity, std::vector<std::string> inherited)
    : layout_(layout),
      store_host_(std::move(store_host)),
      store_port_(store_port),
      torch_master_(std::move(torch_master)),
      identity_(std::move(identity)),
      inherited_(std::move(inherited)) {
  if (layout_.world_size < 1 || layout_.local_size < 1 ||
      layout_.first_rank + layout_.local_size > layout_.world_size) {
    throw Error(ErrorKind::invalid_argument,
                "inconsistent world layout: " + std::to_string(layout_.local_size) +
                    " local ranks from rank " + std::to_string(layout_.first_rank) +
                    " in a world of " + std::to_string(layout_.world_size));
  }
  std::erase_if(inherited_, [](const std::string& e) { return is_contract_entry(e); });
}

std::vector<std::string> JobEnvironment::current_environment() {
  std::vector<std::string> entries;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) entries.emplace_back(*e);
  return entries;
}

std::string JobEnvironment::store_address() const {
  return store_host_ + ":" + std::to_string(store_port_);
}

std::vector<std::string> JobEnvironment::for_local_rank(int local_rank) const {
  if (local_rank < 0 || local_rank >= layout_.local_size) {
    throw Error(ErrorKind::invalid_argument,
                "local rank " + std::to_string(local_rank) + " is outside 0.." +
                    std::to_string(layout_.local_size - 1));
  }
  std::vector<std::string> env = inherited_;
  const auto own = assignments_for_local_rank(local_rank);
  env.insert(env.end(), own.begin(), own.end());
  return env;
}

void JobEnvironment::set_extra(const std::string& name, const std::string& value) {
  const std::string prefix = name + "=";
  auto named = [&prefix](const std::string& e) { return e.starts_with(prefix); };
  std::erase_if(inherited_, named);
  std::erase_if(extra_, named);
  extra_.push_back(prefix + value);
}

std::vector<std::string> JobEnvironment::assignments_for_local_rank(int local_rank) const {
  const int rank = layout_.first_rank + local_rank;
  std::vector<std::string> env = extra_;
  auto set = [&env](std::string_view name, const std::string& value) {
    env.push_back(std::string(name) + "=" + value);
  };
  set("RINGFUSE_RANK", std::to_string(rank));
  set("RINGFUSE_SIZE", std::to_string(layout_.world_size));
  set("RINGFUSE_LOCAL_RANK", std::to_string(local_rank));
  set("RINGFUSE_LOCAL_SIZE", std::to_string(layout_.local_size));
  set("RINGFUSE_CROSS_RANK", std::to_string(layout_.cross_rank));
  set("RINGFUSE_CROSS_SIZE", std::to_string(layout_.cross_size));
  set("RINGFUSE_STORE_ADDR", store_address());
  set("RINGFUSE_JOB_ID", identity_.job_id);
  set("RINGFUSE_JOB_SECRET", identity_.job_secret);
  // torchrun's names, so torch.distributed-style programs run unchanged: MASTER_* is where
  // env:// meets (rank 0's TCPStore), not our store.
  set("RANK", std::to_string(rank));
  set("WORLD_SIZE", std::to_string(layout_.world_size));
  set("LOCAL_RANK", std::to_string(local_rank));
  set("LOCAL_WORLD_SIZE", std::to_string(layout_.local_size));
  set("GROUP_RANK", std::to_string(layout_.cross_rank));
  set("GROUP_WORLD_SIZE", std::to_string(layout_.cross_size));
  set("MASTER_ADDR", torch_master_.host);
  set("MASTER_PORT", std::to_string(torch_master_.port));
  // horovodrun's names, so Horovod scripts (import ringfuse.torch as hvd) that read them see
  // the same world.
  set("HOROVOD_RANK", std::to_string(rank));
  set("HOROVOD_SIZE", std::to_string(layout_.world_size));
  set("HOROVOD_LOCAL_RANK", std::to_string(local_rank));
  set("HOROVOD_LOCAL_SIZE", std::to_string(layout_.local_size));
  set("HOROVOD_CROSS_RANK", std::to_string(layout_.cross_rank));
  set("HOROVOD_CROSS_SIZE", std::to_string(layout_.cross_size));
  return env;
}

}  // namespace ringfuse::launcher
