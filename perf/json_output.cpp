#include "json_output.hpp"

#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "ringfuse/error.hpp"

namespace ringfuse::perf {

void write_json(const std::string& path, const RunInfo& info, const std::vector<Row>& rows) {
  nlohmann::json doc;
  doc["tool"] = "ringfuse-perf";
  doc["collective"] = info.collective;
  doc["nranks"] = info.nranks;
  doc["launcher"] = info.launcher;
  doc["timing"] = info.timing;
  doc["transport"] = info.transport;
  doc["malloc_env"] = info.malloc_env;
  doc["malloc_pass"] = info.malloc_pass;
  doc["notes"] = info.notes;
  doc["command"] = info.command;
  auto& out = doc["rows"] = nlohmann::json::array();
  for (const Row& r : rows) {
    nlohmann::json j;
    j["impl"] = r.impl;
    j["algo"] = r.algo;
    j["size"] = r.size;
    j["count"] = r.count;
    j["type"] = r.type;
    j["redop"] = r.redop;
    j["time_us"] = r.time_us;
    j["min_us"] = r.min_us;
    j["max_us"] = r.max_us;
    j["algbw_GBps"] = r.algbw_gbps;
    j["busbw_GBps"] = r.busbw_gbps;
    j["wrong"] = r.wrong ? nlohmann::json(*r.wrong) : nlohmann::json(nullptr);
    j["iters"] = r.iters;
    j["ours"] = r.ours;
    j["ratio"] = r.ratio ? nlohmann::json(*r.ratio) : nlohmann::json(nullptr);
    out.push_back(std::move(j));
  }
  std::ofstream file(path);
  file << doc.dump(2) << "\n";
  if (!file) {
    throw Error(ErrorKind::system, fmt::format("ringfuse-perf: cannot write --json {}", path));
  }
}

}  // namespace ringfuse::perf
