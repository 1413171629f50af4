// The transport of a world of one: there is nobody to talk to, so any use is a bug.
#pragma once

#include "ringfuse/error.hpp"
#include "transport/transport.hpp"

namespace ringfuse::transport {

class SelfTransport final : public Transport {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void send_recv(int send_peer, const void*, std::size_t, int recv_peer, void*, std::size_t,
                 const RecvProgress&) override {
    throw Error(ErrorKind::invalid_argument,
                "rank 0: a world of one has no peer to exchange data with (asked for send peer " +
                    std::to_string(send_peer) + ", receive peer " + std::to_string(recv_peer) +
                    ")",
                0);
  }
  void set_operation(std::string) override {}
};

}  // namespace ringfuse::transport
