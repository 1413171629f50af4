// `ringfuse-perf sendrecv`: point-to-point latency and bandwidth between ranks 0 and 1, in the
// manner of the OSU pair osu_latency / osu_bw, ours (Context::send/recv) and Open MPI's
// MPI_Send/MPI_Recv measured in the same run (under mpirun):
//  - latency: half the round trip of a ping-pong of one message of the size;
//  - bandwidth: a window of back-to-back sends of the size (one send_recv_group of them, as
//    osu_bw posts MPI_Isends; MPI_Isend/MPI_Irecv + MPI_Waitall for Open MPI), then a one-byte
//    acknowledgement; bytes of the window / time.
// Each row is the median over -n timed iterations after -w untimed ones; other ranks only wait.
#pragma once

#include "flags.hpp"

namespace ringfuse::perf {

int run_sendrecv(int argc, char** argv, const PerfOptions& options);

}  // namespace ringfuse::perf
