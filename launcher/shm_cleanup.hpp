// The launcher's last word on shared memory: a rank killed by SIGKILL (or by a signal it
// handles itself) during set-up cannot remove the /dev/shm names it created, and its peers
// may never learn them. Once every local rank of the job has ended, nothing of the job can
// still need them, so the launcher removes whatever names of its job are left.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace ringfuse::launcher {

/// Unlinks every entry of `directory` that is a shared-memory segment of job `job_id`
/// ("ringfuse-<job id>_<generation>_..."), and returns the names removed. Call it only when
/// no process of the job runs on this host any more.
std::vector<std::string> remove_job_segments(const std::string& job_id,
                                             const std::filesystem::path& directory = "/dev/shm");

/// The RINGFUSE_JOB_ID value in a rank's environment ("NAME=value" entries), or "" if none.
std::string job_id_in(const std::vector<std::string>& environment);

}  // namespace ringfuse::launcher
