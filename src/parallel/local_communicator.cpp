// Communicators without MPI: a single rank ("self"), and a group of threads sharing memory
// ("local", for unit tests). Local collectives post each rank's buffer pointer, meet at a
// barrier, and reduce in rank order (so every rank gets the same bits), then meet again before
// anyone may reuse its buffer. Non-blocking calls complete before they return.
#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <tuple>

#include "core/error.h"
#include "core/lowp.h"
#include "parallel/communicator.h"

namespace meshlm {

namespace {

struct DoneRequest final : Request {
  void wait() override {}
  bool test() override { return true; }
};

// out[i] = op(out[i], in[i]) for n elements of dt, in fp32 arithmetic.
void reduce_into(DType dt, ReduceOp op, void* out, const void* in, int64_t n) {
  auto apply = [op](float a, float b) { return op == ReduceOp::sum ? a + b : (a > b ? a : b); };
  if (dt == DType::fp32) {
    float* o = static_cast<float*>(out);
    const float* x = static_cast<const float*>(in);
    for (int64_t i = 0; i < n; i++) o[i] = apply(o[i], x[i]);
  } else if (dt == DType::fp64) {
    double* o = static_cast<double*>(out);
    const double* x = static_cast<const double*>(in);
    for (int64_t i = 0; i < n; i++) o[i] = op == ReduceOp::sum ? o[i] + x[i] : (o[i] > x[i] ? o[i] : x[i]);
  } else if (dt == DType::bf16) {
    uint16_t* o = static_cast<uint16_t*>(out);
    const uint16_t* x = static_cast<const uint16_t*>(in);
    for (int64_t i = 0; i < n; i++)
      o[i] = lowp::f32_to_bf16(apply(lowp::bf16_to_f32(o[i]), lowp::bf16_to_f32(x[i])));
  } else {
    throw Error(std::string("communicator: reductions take fp32, fp64 or bf16, not ") + dtype_name(dt));
  }
}

int64_t total(const std::vector<int64_t>& counts) {
  int64_t t = 0;
  for (int64_t c : counts) t += c;
  return t;
}

}  // namespace


namespace {

class SelfCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const char* kind() const override { return "self"; }
  std::string library_version() const override { return "a single rank, no MPI"; }
  void all_reduce(void*, int64_t, DType, ReduceOp) override {}
  RequestPtr iall_reduce(void*, int64_t, DType, ReduceOp) override { return std::make_unique<DoneRequest>(); }
  void reduce_scatter(const void* send, void* recv, const std::vector<int64_t>& counts, DType dt) override {
    MESHLM_CHECK(counts.size() == 1, "reduce_scatter: one count per rank");
    if (send != recv) std::memcpy(recv, send, size_t(counts[0]) * dtype_size(dt));
  }
  void all_gather(const void* send, void* recv, const std::vector<int64_t>& counts, DType dt) override {
    MESHLM_CHECK(counts.size() == 1, "all_gather: one count per rank");
    if (send != recv) std::memcpy(recv, send, size_t(counts[0]) * dtype_size(dt));
  }
  void broadcast(void*, int64_t, DType, int) override {}
  void send(const void*, int64_t, DType, int, int) override { throw Error("send: a single rank has no peer"); }
  void recv(void*, int64_t, DType, int, int) override { throw Error("recv: a single rank has no peer"); }
  RequestPtr isend(const void*, int64_t, DType, int, int) override { throw Error("isend: a single rank has no peer"); }
  RequestPtr irecv(void*, int64_t, DType, int, int) override { throw Error("irecv: a single rank has no peer"); }
  void barrier() override {}
  std::unique_ptr<Communicator> split(int, int) override { return std::make_unique<SelfCommunicator>(); }
  [[noreturn]] void abort(int code) override { std::_Exit(code); }
};

// The state a group of threads shares.
struct LocalGroup {
  explicit LocalGroup(int n) : n(n), posted(size_t(n), nullptr), colors(size_t(n)) {}
  const int n;
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  uint64_t generation = 0;
  std::vector<const void*> posted;           // each rank's buffer for the current collective
  std::vector<std::pair<int, int>> colors;   // split: (color, key) per rank
  std::map<int, std::shared_ptr<LocalGroup>> children;  // split: the new group per color
  // (src, dest, tag) -> the messages waiting, in the order sent (MPI's non-overtaking rule)
  std::map<std::tuple<int, int, int>, std::deque<std::vector<char>>> mailbox;

  void barrier() {
    std::unique_lock<std::mutex> lk(mu);
    const uint64_t gen = generation;
    if (++arrived == n) {
      arrived = 0;
      generation++;
      cv.notify_all();
    } else {
      cv.wait(lk, [&] { return generation != gen; });
    }
  }
};

class LocalCommunicator final : public Communicator {
 public:
  LocalCommunicator(std::shared_ptr<LocalGroup> g, int rank) : g_(std::move(g)), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return g_->n; }
  const char* kind() const override { return "local"; }
  std::string library_version() const override { return "threads of one process"; }

  void all_reduce(void* buf, int64_t n, DType dt, ReduceOp op) override {
    const size_t bytes = size_t(n) * dtype_size(dt);
    post(buf);
    std::vector<char> acc(static_cast<const char*>(g_->posted[0]), static_cast<const char*>(g_->posted[0]) + bytes);
    for (int r = 1; r < g_->n; r++) reduce_into(dt, op, acc.data(), g_->posted[size_t(r)], n);
    g_->barrier();  // everyone has read every input
    std::memcpy(buf, acc.data(), bytes);
    g_->barrier();
  }
  RequestPtr iall_reduce(void* buf, int64_t n, DType dt, ReduceOp op) override {
    all_reduce(buf, n, dt, op);
    return std::make_unique<DoneRequest>();
  }
  void reduce_scatter(const void* send, void* recv, const std::vector<int64_t>& counts, DType dt) override {
    MESHLM_CHECK(int(counts.size()) == g_->n, "reduce_scatter: one count per rank");
    const size_t esz = dtype_size(dt);
    int64_t off = 0;
    for (int r = 0; r < rank_; r++) off += counts[size_t(r)];
    post(send);
    const int64_t n = counts[size_t(rank_)];
    std::vector<char> acc(static_cast<const char*>(g_->posted[0]) + off * esz,
                          static_cast<const char*>(g_->posted[0]) + (off + n) * esz);
    for (int r = 1; r < g_->n; r++)
      reduce_into(dt, ReduceOp::sum, acc.data(), static_cast<const char*>(g_->posted[size_t(r)]) + off * esz, n);
    g_->barrier();
    std::memcpy(recv, acc.data(), acc.size());
    g_->barrier();
  }
  void all_gather(const void* send, void* recv, const std::vector<int64_t>& counts, DType dt) override {
    MESHLM_CHECK(int(counts.size()) == g_->n, "all_gather: one count per rank");
    const size_t esz = dtype_size(dt);
    std::vector<char> own(static_cast<const char*>(send), static_cast<const char*>(send) + counts[size_t(rank_)] * esz);
    post(own.data());  // a copy: send may alias recv
    std::vector<char> out(size_t(total(counts)) * esz);
    int64_t off = 0;
    for (int r = 0; r < g_->n; r++) {
      std::memcpy(out.data() + off * esz, g_->posted[size_t(r)], size_t(counts[size_t(r)]) * esz);
      off += counts[size_t(r)];
    }
    g_->barrier();
    std::memcpy(recv, out.data(), out.size());
    g_->barrier();
  }
  void broadcast(void* buf, int64_t n, DType dt, int root) override {
    post(buf);
    std::vector<char> data(static_cast<const char*>(g_->posted[size_t(root)]),
                           static_cast<const char*>(g_->posted[size_t(root)]) + size_t(n) * dtype_size(dt));
    g_->barrier();
    std::memcpy(buf, data.data(), data.size());
    g_->barrier();
  }
  void send(const void* buf, int64_t n, DType dt, int dest, int tag) override {
    std::lock_guard<std::mutex> lk(g_->mu);
    const char* p = static_cast<const char*>(buf);
    g_->mailbox[{rank_, dest, tag}].emplace_back(p, p + size_t(n) * dtype_size(dt));
    g_->cv.notify_all();
  }
  void recv(void* buf, int64_t n, DType dt, int src, int tag) override {
    std::unique_lock<std::mutex> lk(g_->mu);
    const auto key = std::make_tuple(src, rank_, tag);
    g_->cv.wait(lk, [&] { return !g_->mailbox[key].empty(); });
    auto& queue = g_->mailbox[key];
    const std::vector<char>& box = queue.front();
    MESHLM_CHECK(box.size() == size_t(n) * dtype_size(dt), "local recv: message size mismatch");
    std::memcpy(buf, box.data(), box.size());
    queue.pop_front();
  }
  // A send is buffered in the mailbox (complete at once); a receive happens at wait().
  RequestPtr isend(const void* buf, int64_t n, DType dt, int dest, int tag) override {
    send(buf, n, dt, dest, tag);
    return std::make_unique<DoneRequest>();
  }
  RequestPtr irecv(void* buf, int64_t n, DType dt, int src, int tag) override {
    struct Deferred final : Request {
      LocalCommunicator* c;
      void* buf;
      int64_t n;
      DType dt;
      int src, tag;
      bool done = false;
      void wait() override {
        if (!done) c->recv(buf, n, dt, src, tag);
        done = true;
      }
      bool test() override {
        if (!done) {
          std::lock_guard<std::mutex> lk(c->g_->mu);
          if (c->g_->mailbox[{src, c->rank_, tag}].empty()) return false;
        }
        wait();
        return true;
      }
    };
    auto r = std::make_unique<Deferred>();
    r->c = this;
    r->buf = buf;
    r->n = n;
    r->dt = dt;
    r->src = src;
    r->tag = tag;
    return r;
  }
  void barrier() override { g_->barrier(); }
  std::unique_ptr<Communicator> split(int color, int key) override {
    {
      std::lock_guard<std::mutex> lk(g_->mu);
      g_->colors[size_t(rank_)] = {color, key};
    }
    g_->barrier();
    std::vector<std::pair<int, int>> members;  // (key, rank) of this color
    for (int r = 0; r < g_->n; r++)
      if (g_->colors[size_t(r)].first == color) members.push_back({g_->colors[size_t(r)].second, r});
    std::sort(members.begin(), members.end());
    int new_rank = 0;
    while (members[size_t(new_rank)].second != rank_) new_rank++;
    std::shared_ptr<LocalGroup> child;
    {
      std::lock_guard<std::mutex> lk(g_->mu);
      auto& c = g_->children[color];
      if (!c) c = std::make_shared<LocalGroup>(int(members.size()));
      child = c;
    }
    g_->barrier();  // everyone holds its child group
    if (rank_ == 0) {
      std::lock_guard<std::mutex> lk(g_->mu);
      g_->children.clear();
    }
    g_->barrier();
    return std::make_unique<LocalCommunicator>(child, new_rank);
  }
  [[noreturn]] void abort(int code) override { std::_Exit(code); }

 private:
  // Publishes this rank's buffer for the collective and waits until every rank has.
  void post(const void* p) {
    {
      std::lock_guard<std::mutex> lk(g_->mu);
      g_->posted[size_t(rank_)] = p;
    }
    g_->barrier();
  }
  std::shared_ptr<LocalGroup> g_;
  int rank_;
};

}  // namespace

std::unique_ptr<Communicator> make_self_communicator() { return std::make_unique<SelfCommunicator>(); }

std::vector<std::unique_ptr<Communicator>> make_local_group(int n) {
  MESHLM_CHECK(n >= 1, "a local group needs at least one rank");
  auto g = std::make_shared<LocalGroup>(n);
  std::vector<std::unique_ptr<Communicator>> out;
  for (int r = 0; r < n; r++) out.push_back(std::make_unique<LocalCommunicator>(g, r));
  return out;
}

}  // namespace meshlm
