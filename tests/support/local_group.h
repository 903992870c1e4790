// Runs a function on every rank of an in-process communicator group: one thread per rank, each
// with one OpenMP thread (the ranks share the cores, as mpirun --oversubscribe would). A
// meshlm::Error or other exception on a rank fails the calling test, naming the rank.
#pragma once
#include <gtest/gtest.h>
#include <omp.h>

#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "parallel/communicator.h"

namespace meshlm::test {

inline void on_local_group(int n, const std::function<void(Communicator&)>& f) {
  auto comms = make_local_group(n);
  std::vector<std::thread> threads;
  std::vector<std::string> errors(static_cast<size_t>(n));
  for (int r = 0; r < n; r++)
    threads.emplace_back([&, r] {
      omp_set_num_threads(1);
      try {
        f(*comms[size_t(r)]);
      } catch (const std::exception& e) {
        errors[size_t(r)] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < n; r++) EXPECT_EQ(errors[size_t(r)], "") << "rank " << r;
}

}  // namespace meshlm::test
