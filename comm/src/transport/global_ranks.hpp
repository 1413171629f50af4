// The global rank behind each position of a transport's group. A hierarchy's transports see
// only positions (a rank's place among the ranks of its host, or among the ranks with its
// local rank on every host); errors must name the ranks users know, and the store keys peers
// read each other's state under must agree, so both go through this table. Where the group
// spans hosts, it also knows where each position runs, so that set-up errors can say which
// host and address a missing or unreachable peer is at.
#pragma once

#include <string>
#include <vector>

namespace ringfuse::transport {

class GlobalRanks {
 public:
  /// Positions are global ranks (a transport over the whole world).
  GlobalRanks() = default;
  /// table[position] is the global rank at that position; places[position], when given, says
  /// where it runs ("rfhost1 (10.99.0.2)": host name and advertised address).
  explicit GlobalRanks(std::vector<int> table, std::vector<std::string> places = {})
      : table_(std::move(table)), places_(std::move(places)) {}

  /// The global rank at `position`; a position outside the table (kNoPeer, an invalid peer)
  /// is returned unchanged.
  int operator()(int position) const {
    if (position < 0 || static_cast<std::size_t>(position) >= table_.size()) return position;
    return table_[static_cast<std::size_t>(position)];
  }

  /// Where `position` runs ("rfhost1 (10.99.0.2)"), or empty when that is not known.
  std::string place(int position) const {
    if (position < 0 || static_cast<std::size_t>(position) >= places_.size()) return {};
    return places_[static_cast<std::size_t>(position)];
  }

  /// Whether any position's place is known.
  bool knows_places() const { return !places_.empty(); }

  /// The same ranks, each running where `places[position]` says (a flat world's host names,
  /// learnt when its ranks decide who shares memory).
  GlobalRanks placed(std::vector<std::string> places) const {
    return GlobalRanks(table_, std::move(places));
  }

  /// The host name `position` runs on (the first word of its place), or empty.
  std::string host(int position) const {
    const std::string where = place(position);
    return where.substr(0, where.find(' '));
  }

  /// "rank 3 on rfhost1 (10.99.0.2)" when the place of `position` is known, else "rank 3".
  std::string name(int position) const {
    std::string text = "rank " + std::to_string((*this)(position));
    if (position >= 0 && static_cast<std::size_t>(position) < places_.size() &&
        !places_[static_cast<std::size_t>(position)].empty()) {
      text += " on " + places_[static_cast<std::size_t>(position)];
    }
    return text;
  }

 private:
  std::vector<int> table_;
  std::vector<std::string> places_;
};

}  // namespace ringfuse::transport
