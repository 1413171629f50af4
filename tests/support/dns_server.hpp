// A real DNS server for tests: dnsmasq on a free loopback port, answering for cluster.local
// from a hosts directory it re-reads on every query, so records can be added while clients
// wait (as pods appear late behind a headless Service).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "free_port.hpp"
#include "subprocess.hpp"

namespace ringfuse::testing {

inline constexpr const char* kDnsmasqPath = "/usr/sbin/dnsmasq";

/// Whether a DNS server on 127.0.0.1:`port` answers an A query for `name` within 200 ms.
bool dns_answers(std::uint16_t port, const std::string& name);

class Dnsmasq {
 public:
  /// Starts dnsmasq and waits (up to 10 s) until it answers for `probe_name`; ready() says
  /// whether it did.
  explicit Dnsmasq(const std::string& probe_name);
  ~Dnsmasq();
  Dnsmasq(const Dnsmasq&) = delete;
  Dnsmasq& operator=(const Dnsmasq&) = delete;

  bool ready() const { return ready_; }
  /// Writes a hosts-format `line` ("IP name1 name2") as its own file `file_name`.
  void add_record(const std::string& file_name, const std::string& line);
  /// "127.0.0.1:PORT", for --dns-server.
  std::string server() const;
  std::string log() const { return process_->output(); }

 private:
  std::filesystem::path dir_;
  std::uint16_t port_ = 0;
  bool ready_ = false;
  std::unique_ptr<Process> process_;
};

}  // namespace ringfuse::testing
