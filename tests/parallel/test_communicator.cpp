// The local (threads) communicator's collectives against what they must compute, for group
// sizes 1-4 and uneven counts; the mesh's rank order and sub-communicators; the MPI one runs
// the same checks under mpirun (tests/parallel/mpi_collectives.cpp).
#include <gtest/gtest.h>

#include "backend/backend.h"

#include <cmath>
#include <functional>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "parallel/collectives_check.h"
#include "parallel/communicator.h"
#include "parallel/data_parallel.h"
#include "parallel/mesh.h"
#include "support/local_group.h"

using namespace meshlm;

namespace {

void on_group(int n, const std::function<void(Communicator&)>& f) { test::on_local_group(n, f); }

}  // namespace

TEST(LocalCommunicator, CollectivesComputeWhatTheyMust) {
  for (int n = 1; n <= 4; n++) {
    on_group(n, [](Communicator& c) {
      const std::string failure = test::check_collectives(c);
      if (!failure.empty()) throw Error("rank " + std::to_string(c.rank()) + ": " + failure);
    });
  }
}

// The staged communicator (device buffers through host copies) computes every collective as
// the communicator it wraps: here over the cpu backend, whose download and upload are copies.
TEST(StagedCommunicator, CollectivesComputeWhatTheyMust) {
  for (int n = 1; n <= 3; n++) {
    on_group(n, [](Communicator& c) {
      auto be = make_cpu_backend();
      auto staged = as_staged_client(c, *be);
      const std::string failure = test::check_collectives(*staged);
      if (!failure.empty()) throw Error("rank " + std::to_string(c.rank()) + ": " + failure);
    });
  }
}

TEST(Mesh, RankOrderIsTpFastestThenDpThenPp) {
  on_group(8, [](Communicator& world) {
    Mesh m(world, {2, 2, 2});
    const int r = world.rank();
    if (m.tp_rank() != r % 2 || m.dp_rank() != (r / 2) % 2 || m.pp_rank() != r / 4)
      throw Error("wrong coordinates for rank " + std::to_string(r));
    // Each axis communicator holds the ranks that differ only in that coordinate: summing the
    // world ranks over it tells which.
    auto sum_over = [&](Communicator& c) {
      double x = r;
      c.all_reduce(&x, 1, DType::fp64);
      return int(x);
    };
    const int tp_sum = sum_over(m.tp()), dp_sum = sum_over(m.dp()), pp_sum = sum_over(m.pp());
    const int base_tp = r - m.tp_rank(), base_dp = r - 2 * m.dp_rank(), base_pp = r - 4 * m.pp_rank();
    if (tp_sum != 2 * base_tp + 1 || dp_sum != 2 * base_dp + 2 || pp_sum != 2 * base_pp + 4)
      throw Error("axis groups hold the wrong ranks at rank " + std::to_string(r));
    if (m.tp().rank() != m.tp_rank() || m.dp().rank() != m.dp_rank() || m.pp().rank() != m.pp_rank())
      throw Error("axis ranks differ from coordinates");
  });
}

TEST(Mesh, WrongLayoutIsAOneLineError) {
  on_group(4, [](Communicator& world) {
    try {
      Mesh m(world, {3, 1, 1});
    } catch (const Error& e) {
      if (std::string(e.what()).find("needs 3 ranks, but the job has 4") == std::string::npos) throw;
      return;
    }
    throw Error("expected an error");
  });
  on_group(2, [](Communicator& world) {
    Mesh m(world, {2, 1, 1});
    if (m.tp().size() != 1 || m.pp().size() != 1 || m.dp().size() != 2) throw Error("size-1 axes");
  });
}

// Buckets are cut from the end of the buffer, launched as backward reports gradients final, and
// finish() leaves the sum over ranks everywhere (fp32 exactly; bf16 to its rounding).
TEST(GradientBuckets, SumOverRanksInBucketsFromTheEnd) {
  for (DType dt : {DType::fp32, DType::bf16}) {
    on_group(3, [dt](Communicator& c) {
      const int64_t P = 1000;
      auto be = make_cpu_backend();
      GradientBuckets b(c, *be, P, 300, dt);
      if (b.count() != 4) throw Error("expected 4 buckets of <= 300");
      std::vector<float> g(P);
      for (int64_t i = 0; i < P; i++) g[size_t(i)] = float(i % 17) + float(c.rank());
      b.start(g.data());
      for (int64_t off : {900, 700, 650, 100, 0}) b.ready_from(off);  // as backward would
      b.finish();
      for (int64_t i = 0; i < P; i++) {
        const float want = 3.0f * float(i % 17) + 3.0f;  // ranks 0 + 1 + 2
        if (g[size_t(i)] != want) throw Error(std::string(dtype_name(dt)) + ": element " + std::to_string(i));
      }
    });
  }
  EXPECT_EQ(zero1_counts(10, 3), (std::vector<int64_t>{3, 3, 4}));
  EXPECT_EQ(Zero1Shard::of(10, 2, 3).begin, 6);
}
