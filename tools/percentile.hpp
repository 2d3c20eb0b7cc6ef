// The percentile rule of every benchmark command (`narae bench switch`,
// `bench http`, `bench ledger`, `bench machine`): of n samples in ascending
// order, the one of rank round(q x (n - 1)), with q in basis points
// (1/10,000: 5,000 = p50, 9,900 = p99, 9,990 = p99.9, 10,000 = the maximum),
// in integers only. 0 for no samples; q above 10,000 aborts.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "ledger/status.hpp"

namespace narae::tools {

inline constexpr uint32_t kBasisPointsPerOne = 10'000;

template <typename T>
T PercentileOfSorted(const std::vector<T>& sorted, uint32_t q_basis_points) {
  NARAE_CHECK(q_basis_points <= kBasisPointsPerOne);
  if (sorted.empty()) return T{};
  const size_t n = sorted.size();
  // (n - 1) x 10,000 fits in 64 bits for any vector that fits in memory.
  static_assert(sizeof(size_t) >= 8);
  const size_t rank = ((n - 1) * q_basis_points + kBasisPointsPerOne / 2) / kBasisPointsPerOne;
  return sorted[std::min(rank, n - 1)];
}

}  // namespace narae::tools
