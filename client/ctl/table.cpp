#include "table.h"

#include <algorithm>

namespace moepool::ctl {

Table::Table(std::vector<std::string> header, std::vector<bool> right) : right_(std::move(right)) {
  right_.resize(header.size(), false);
  rows_.push_back(std::move(header));
}

void Table::add_row(std::vector<std::string> cells) {
  cells.resize(rows_[0].size());
  rows_.push_back(std::move(cells));
}

std::string Table::render() const {
  size_t cols = rows_[0].size();
  std::vector<size_t> width(cols, 0);
  for (const auto& r : rows_)
    for (size_t c = 0; c < cols; ++c) width[c] = std::max(width[c], r[c].size());
  std::string out;
  for (const auto& r : rows_) {
    std::string line;
    for (size_t c = 0; c < cols; ++c) {
      if (c > 0) line += "  ";
      size_t pad = width[c] - r[c].size();
      if (right_[c]) line.append(pad, ' ');
      line += r[c];
      if (!right_[c] && c + 1 < cols) line.append(pad, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line;
    out += '\n';
  }
  return out;
}

}  // namespace moepool::ctl
