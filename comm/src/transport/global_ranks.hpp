// The global rank behind each position of a transport's group. A hierarchy's transports see
// only positions (a rank's place among the ranks of its host, or among the ranks with its
// local rank on every host); errors must name the ranks users know, and the store keys peers
// read each other's state under must agree, so both go through this table.
#pragma once

#include <vector>

namespace ringfuse::transport {

class GlobalRanks {
 public:
  /// Positions are global ranks (a transport over the whole world).
  GlobalRanks() = default;
  /// table[position] is the global rank at that position.
  explicit GlobalRanks(std::vector<int> table) : table_(std::move(table)) {}

  /// The global rank at `position`; a position outside the table (kNoPeer, an invalid peer)
  /// is returned unchanged.
  int operator()(int position) const {
    if (position < 0 || static_cast<std::size_t>(position) >= table_.size()) return position;
    return table_[static_cast<std::size_t>(position)];
  }

 private:
  std::vector<int> table_;
};

}  // namespace ringfuse::transport
