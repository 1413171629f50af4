#include "shm_cleanup.hpp"

#include <cctype>
#include <system_error>

#include "transport/shm_segment.hpp"

namespace ringfuse::launcher {

std::vector<std::string> remove_job_segments(const std::string& job_id,
                                             const std::filesystem::path& directory) {
  std::vector<std::string> removed;
  if (job_id.empty()) return removed;
  const std::string prefix = transport::shm::job_segment_prefix(job_id);
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(directory, error)) {
    const std::string name = entry.path().filename().string();
    // The world's generation (digits) follows the job id: job "a" never takes job "a_b"'s
    // names. (Job "a" would take job "a_1"'s, but the launcher's ids are hex digits only.)
    if (!name.starts_with(prefix) || name.size() == prefix.size() ||
        !std::isdigit(static_cast<unsigned char>(name[prefix.size()]))) {
      continue;
    }
    std::error_code ignored;
    if (std::filesystem::remove(entry.path(), ignored)) removed.push_back(name);
  }
  return removed;
}

std::string job_id_in(const std::vector<std::string>& environment) {
  constexpr std::string_view kKey = "RINGFUSE_JOB_ID=";
  for (const auto& entry : environment) {
    if (entry.starts_with(kKey)) return entry.substr(kKey.size());
  }
  return {};
}

}  // namespace ringfuse::launcher
