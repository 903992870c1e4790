// The guarded backend: its memory is inaccessible outside its ops, so a host read or write of a
// tensor from above the backend dies at once with a message naming the address; its ops, and
// a declared client inside ClientAccess (what the communicator does), reach the memory.
#include <gtest/gtest.h>

#include <vector>

#include "backend/backend.h"
#include "backend/guarded.h"
#include "core/error.h"

using namespace meshlm;

namespace {

class Guarded : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(Guarded, HostReadOutsideABackendCallDies) {
  EXPECT_DEATH(
      {
        auto be = make_backend("cpu-guarded");
        Tensor t({256}, DType::fp32, *be);
        volatile float x = t.as<float>()[3];  // what a host loop above the backend would do
        (void)x;
      },
      "guarded backend: host access to tensor memory at 0x[0-9a-f]+ \\(byte 12 of the backend's memory\\) "
      "outside a backend call");
}

TEST_F(Guarded, HostWriteOutsideABackendCallDies) {
  EXPECT_DEATH(
      {
        auto be = make_backend("reference-guarded");
        Tensor t({256}, DType::fp32, *be);
        t.as<float>()[0] = 1.0f;
      },
      "host access to tensor memory");
}

TEST_F(Guarded, OpsAndDeclaredClientsReachTheMemory) {
  auto be = make_backend("cpu-guarded");
  EXPECT_STREQ(be->name(), "cpu-guarded");
  Tensor a({1000}, DType::fp32, *be), b({1000}, DType::fp32, *be);
  const std::vector<float> host(1000, 2.0f);
  be->upload(a.data(), host.data(), 4000);
  be->accumulate(DType::fp32, b.data(), a.data(), 1000);
  EXPECT_EQ(be->sum_squares(DType::fp32, b.data(), 1000), 4000.0);
  {
    ClientAccess open(be.get());  // a communicator's call: the memory is open, nesting included
    ClientAccess nested(be.get());
    EXPECT_EQ(b.as<float>()[999], 2.0f);
    b.as<float>()[999] = 3.0f;
  }
  std::vector<float> back(1000);
  be->download(back.data(), b.data(), 4000);
  EXPECT_EQ(back[999], 3.0f);
  EXPECT_DEATH((void)*static_cast<volatile float*>(b.as<float>()), "host access to tensor memory");
}

}  // namespace

// A host pointer given to an op is an error (on a GPU it would be an invalid address).
TEST(GuardedBuffers, OpsRefuseMemoryThatIsNotTheBackends) {
  auto be = meshlm::make_guarded_backend(meshlm::make_cpu_backend());
  std::vector<float> host(16, 1.0f);
  void* buf = be->allocate(16 * sizeof(float));
  EXPECT_THROW(be->gelu_forward(meshlm::DType::fp32, buf, host.data(), 16), meshlm::Error);
  EXPECT_THROW(be->sum(meshlm::DType::fp32, host.data(), 16), meshlm::Error);
  be->upload(buf, host.data(), 16 * sizeof(float));  // upload and download take host memory
  EXPECT_DOUBLE_EQ(be->sum(meshlm::DType::fp32, buf, 16), 16.0);
  be->deallocate(buf, 16 * sizeof(float));
}
