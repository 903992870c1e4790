// Checks every collective of a communicator against values each rank can compute alone: the
// local group runs it on threads (test_communicator), the MPI one under mpirun
// (mpi_collectives). Returns "" or what failed. Integers and halves keep every sum exact in
// fp32 and bf16, so the expected results are exact.
#pragma once
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "parallel/communicator.h"

namespace meshlm::test {

inline std::string check_collectives(Communicator& c) {
  const int n = c.size(), r = c.rank();
  auto fail = [](const std::string& what) { return what; };
  // all_reduce sum and max, fp32
  std::vector<float> x(1000);
  for (int i = 0; i < 1000; i++) x[size_t(i)] = float(r * 1000 + i);
  c.all_reduce(x.data(), 1000, DType::fp32);
  for (int i = 0; i < 1000; i++)
    if (x[size_t(i)] != float(1000 * n * (n - 1) / 2 + n * i)) return fail("all_reduce fp32 sum");
  float m = float(r);
  c.all_reduce(&m, 1, DType::fp32, ReduceOp::max);
  if (m != float(n - 1)) return fail("all_reduce max");
  // bf16 and fp64
  std::vector<uint16_t> h(37);
  for (int i = 0; i < 37; i++) h[size_t(i)] = float_to_bf16(0.5f * float(i + r));
  c.all_reduce(h.data(), 37, DType::bf16);
  for (int i = 0; i < 37; i++)
    if (bf16_to_float(h[size_t(i)]) != 0.5f * float(n * i + n * (n - 1) / 2)) return fail("all_reduce bf16");
  double d = 0.1 * (r + 1);
  c.all_reduce(&d, 1, DType::fp64);
  if (std::fabs(d - 0.05 * n * (n + 1)) > 1e-12) return fail("all_reduce fp64");
  // non-blocking
  std::vector<float> y(513, float(r + 1));
  RequestPtr req = c.iall_reduce(y.data(), 513, DType::fp32);
  req->wait();
  for (float v : y)
    if (v != float(n * (n + 1) / 2)) return fail("iall_reduce");
  // reduce_scatter with uneven counts: rank k's block has k + 2 elements
  std::vector<int64_t> counts;
  int64_t total = 0;
  for (int k = 0; k < n; k++) {
    counts.push_back(k + 2);
    total += k + 2;
  }
  std::vector<float> send(static_cast<size_t>(total));
  for (int64_t i = 0; i < total; i++) send[size_t(i)] = float(i * (r + 1));
  std::vector<float> recv(static_cast<size_t>(counts[size_t(r)]));
  c.reduce_scatter(send.data(), recv.data(), counts, DType::fp32);
  int64_t off = 0;
  for (int k = 0; k < r; k++) off += counts[size_t(k)];
  for (int64_t i = 0; i < counts[size_t(r)]; i++)
    if (recv[size_t(i)] != float((off + i) * n * (n + 1) / 2)) return fail("reduce_scatter");
  // all_gather of the same uneven blocks, then in place
  std::vector<float> mine(static_cast<size_t>(counts[size_t(r)]), float(r));
  std::vector<float> all(static_cast<size_t>(total));
  c.all_gather(mine.data(), all.data(), counts, DType::fp32);
  off = 0;
  for (int k = 0; k < n; k++)
    for (int64_t i = 0; i < counts[size_t(k)]; i++)
      if (all[size_t(off++)] != float(k)) return fail("all_gather");
  std::vector<float> inplace(static_cast<size_t>(total), -1.0f);
  off = 0;
  for (int k = 0; k < r; k++) off += counts[size_t(k)];
  for (int64_t i = 0; i < counts[size_t(r)]; i++) inplace[size_t(off + i)] = float(r);
  c.all_gather(inplace.data() + off, inplace.data(), counts, DType::fp32);
  if (inplace != all) return fail("all_gather in place");
  // broadcast from the last rank
  std::vector<float> b(10, float(r));
  c.broadcast(b.data(), 10, DType::fp32, n - 1);
  for (float v : b)
    if (v != float(n - 1)) return fail("broadcast");
  // send/recv around a ring
  if (n > 1) {
    float token = float(r), got = -1;
    if (r % 2 == 0) {
      c.send(&token, 1, DType::fp32, (r + 1) % n, 7);
      c.recv(&got, 1, DType::fp32, (r + n - 1) % n, 7);
    } else {
      c.recv(&got, 1, DType::fp32, (r + n - 1) % n, 7);
      c.send(&token, 1, DType::fp32, (r + 1) % n, 7);
    }
    if (got != float((r + n - 1) % n)) return fail("send/recv");
  }
  // split by parity, ordered by descending rank
  auto sub = c.split(r % 2, -r);
  const int members = (n + 1 - r % 2) / 2;
  if (sub->size() != members) return fail("split size");
  float one = 1;
  sub->all_reduce(&one, 1, DType::fp32);
  if (one != float(members)) return fail("split all_reduce");
  int higher = 0;  // same-parity ranks above this one come first
  for (int k = r + 2; k < n; k += 2) higher++;
  if (sub->rank() != higher) return fail("split order by key");
  c.barrier();
  return "";
}

}  // namespace meshlm::test
