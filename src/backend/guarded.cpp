#include "backend/guarded.h"

#include <string_view>

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <vector>

#include "core/error.h"

namespace meshlm {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kReserve = size_t(1) << 36;  // 64 GiB of address space, no memory until used

// The reserved ranges of the live guarded backends, for the fault handler. A signal handler
// can only reach process state; this table is that state (written before a range is used).
constexpr int kMaxArenas = 8;
std::atomic<uintptr_t> g_arena_begin[kMaxArenas];
std::atomic<uintptr_t> g_arena_end[kMaxArenas];
struct sigaction g_previous_segv;

void on_fault(int sig, siginfo_t* info, void* ctx) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(info->si_addr);
  for (int i = 0; i < kMaxArenas; i++) {
    const uintptr_t b = g_arena_begin[i].load(), e = g_arena_end[i].load();
    if (b == 0 || a < b || a >= e) continue;
    char msg[200];
    const int n = std::snprintf(msg, sizeof msg,
                                "meshlm: guarded backend: host access to tensor memory at %p (byte %lu of "
                                "the backend's memory) outside a backend call\n",
                                info->si_addr, static_cast<unsigned long>(a - b));
    if (n > 0) (void)!::write(2, msg, size_t(n));
    break;
  }
  // Then what would have happened without this handler (a crash, or the previous handler).
  ::sigaction(SIGSEGV, &g_previous_segv, nullptr);
  if (!(g_previous_segv.sa_flags & SA_SIGINFO) && g_previous_segv.sa_handler == SIG_DFL) return;  // re-faults
  if (g_previous_segv.sa_flags & SA_SIGINFO) g_previous_segv.sa_sigaction(sig, info, ctx);
  else if (g_previous_segv.sa_handler != SIG_IGN) g_previous_segv.sa_handler(sig);
}

class GuardedBackend final : public Backend {
 public:
  explicit GuardedBackend(std::unique_ptr<Backend> inner) : in_(std::move(inner)) {
    void* p = ::mmap(nullptr, kReserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    MESHLM_CHECK(p != MAP_FAILED, "guarded backend: cannot reserve address space");
    base_ = static_cast<char*>(p);
    for (slot_ = 0; slot_ < kMaxArenas; slot_++) {
      uintptr_t expected = 0;
      if (g_arena_begin[slot_].compare_exchange_strong(expected, reinterpret_cast<uintptr_t>(base_))) break;
    }
    MESHLM_CHECK(slot_ < kMaxArenas, "guarded backend: too many in one process");
    g_arena_end[slot_] = reinterpret_cast<uintptr_t>(base_) + kReserve;
    struct sigaction sa {};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGSEGV, &sa, &g_previous_segv);
  }
  ~GuardedBackend() override {
    g_arena_end[slot_] = 0;
    g_arena_begin[slot_] = 0;
    ::munmap(base_, kReserve);
  }
  const char* name() const override { return name_.c_str(); }
  std::string describe() const override { return in_->describe() + ", guarded memory"; }
  bool supports(Op op, DType dt) const override { return in_->supports(op, dt); }
  void begin_client_access() override { open(); }
  void end_client_access() override { close(); }

  // Zero-filled pages from the arena: fresh ones past the top, or a block freed earlier (its
  // pages were dropped, so they read back as zeros).
  void* allocate(size_t bytes) override {
    if (bytes == 0) return nullptr;
    const size_t need = (bytes + kPage - 1) / kPage * kPage;
    for (size_t i = 0; i < free_.size(); i++) {
      if (free_[i].second < need) continue;
      char* p = base_ + free_[i].first;
      free_[i].first += need;
      free_[i].second -= need;
      if (free_[i].second == 0) free_.erase(free_.begin() + long(i));
      return p;
    }
    MESHLM_CHECK(top_ + need <= kReserve, "guarded backend: out of reserved address space");
    char* p = base_ + top_;
    top_ += need;
    if (depth_ > 0) protect(PROT_READ | PROT_WRITE);  // the new pages open too
    return p;
  }
  void deallocate(void* p, size_t bytes) override {
    if (!p) return;
    const size_t n = (bytes + kPage - 1) / kPage * kPage;
    ::madvise(p, n, MADV_DONTNEED);
    free_.push_back({size_t(static_cast<char*>(p) - base_), n});
  }

  // Every pointer an op is given must be a buffer of this backend (ops.inc), as a device
  // backend requires: a host pointer here would be an invalid address on a GPU. upload and
  // download take one host pointer by definition and are not checked.
  struct Buffers {
    const GuardedBackend& g;
    const char* op;
    template <class... A>
    void operator()(const A&... a) const {
      int i = 0;
      (one(a, ++i), ...);
    }
    template <class T>
    void one(T* p, int i) const {
      const char* c = reinterpret_cast<const char*>(p);
      if (p && (c < g.base_ || c >= g.base_ + g.top_))
        throw Error(std::string("guarded backend: ") + op + " was given memory that is not the backend's (argument " +
                    std::to_string(i) + "); every pointer must be a backend buffer (backend/ops.inc)");
    }
    template <class T>
    void one(const T&, int) const {}
  };
  Buffers buffers(const char* op) const { return {*this, op}; }

#define MESHLM_OP(R, name, family, key, params, args)                            \
  R name params override {                                                       \
    if (std::string_view(#name) != "upload" && std::string_view(#name) != "download") \
      buffers(#name) args;                                                       \
    Open open_scope(*this);                                                      \
    return in_->name args;                                                       \
  }
#include "backend/ops.inc"
#undef MESHLM_OP

 private:
  struct Open {
    GuardedBackend& g;
    explicit Open(GuardedBackend& b) : g(b) { g.open(); }
    ~Open() { g.close(); }
  };
  void open() {
    if (depth_++ == 0) protect(PROT_READ | PROT_WRITE);
  }
  void close() {
    if (--depth_ == 0) protect(PROT_NONE);
  }
  void protect(int prot) {
    if (top_ > 0) MESHLM_CHECK(::mprotect(base_, top_, prot) == 0, "guarded backend: mprotect failed");
  }

  std::unique_ptr<Backend> in_;
  std::string name_ = std::string(in_->name()) + "-guarded";
  char* base_ = nullptr;
  int slot_ = 0;
  size_t top_ = 0;  // bytes of the arena handed out so far
  int depth_ = 0;   // open scopes (ops and client calls nest)
  std::vector<std::pair<size_t, size_t>> free_;  // (offset, bytes) blocks to reuse
};

}  // namespace

std::unique_ptr<Backend> make_guarded_backend(std::unique_ptr<Backend> inner) {
  return std::make_unique<GuardedBackend>(std::move(inner));
}

}  // namespace meshlm
