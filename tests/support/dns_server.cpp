#include "dns_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>
#include <vector>

namespace ringfuse::testing {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

/// A loopback port free a moment ago for both UDP and TCP (dnsmasq binds both).
std::uint16_t free_dns_port() {
  for (int attempt = 0;; ++attempt) {
    const std::uint16_t port = free_port(SOCK_DGRAM);
    if (port_binds(SOCK_STREAM, port) || attempt >= 20) return port;
  }
}

}  // namespace

bool dns_answers(std::uint16_t port, const std::string& name) {
  // A minimal query: header (id, recursion desired, one question), the name, type A, class IN.
  std::string packet("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00", 12);
  std::stringstream labels(name);
  for (std::string label; std::getline(labels, label, '.');) {
    packet += static_cast<char>(label.size());
    packet += label;
  }
  packet += std::string("\x00\x00\x01\x00\x01", 5);
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  timeval tv{0, 200'000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::sendto(fd, packet.data(), packet.size(), 0, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  char reply[512];
  const auto n = ::recv(fd, reply, sizeof reply, 0);
  ::close(fd);
  return n > 0;
}

Dnsmasq::Dnsmasq(const std::string& probe_name)
    : dir_(fs::temp_directory_path() /
           ("ringfuse-dns-" + std::to_string(::getpid()) + "-" +
            std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()))) {
  fs::remove_all(dir_);
  fs::create_directories(dir_ / "hosts");
  // dnsmasq listens on the port over UDP and TCP, and the port is only known to have been free
  // a moment ago: another test's loopback connection (or a server) can take it before dnsmasq
  // binds, and dnsmasq then exits with "Address already in use". Try another port then.
  for (int attempt = 0; attempt < 5 && !ready_; ++attempt) {
    process_.reset();
    port_ = free_dns_port();
    process_ = std::make_unique<Process>(
        std::vector<std::string>{kDnsmasqPath, "--keep-in-foreground", "--conf-file=/dev/null",
                                 "--no-resolv", "--no-hosts",
                                 "--hostsdir=" + (dir_ / "hosts").string(),
                                 "--listen-address=127.0.0.1", "--bind-interfaces",
                                 "--port=" + std::to_string(port_), "--pid-file=",
                                 "--local=/cluster.local/", "--log-facility=-"},
        std::map<std::string, std::string>{});
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!(ready_ = dns_answers(port_, probe_name)) &&
           std::chrono::steady_clock::now() < deadline) {
      if (process_->output().find("Address already in use") != std::string::npos) break;
      std::this_thread::sleep_for(100ms);
    }
  }
}

Dnsmasq::~Dnsmasq() {
  ::kill(process_->pid(), SIGTERM);
  process_->wait(5s);
  fs::remove_all(dir_);
}

void Dnsmasq::add_record(const std::string& file_name, const std::string& line) {
  std::ofstream(dir_ / "hosts" / file_name) << line << "\n";
}

std::string Dnsmasq::server() const { return "127.0.0.1:" + std::to_string(port_); }

}  // namespace ringfuse::testing
