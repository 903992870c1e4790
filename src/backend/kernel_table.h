// KernelTable<Impl>: a Backend built from the op list (backend/ops.inc) by forwarding every op
// to the member function of the same name of Impl, a plain (non-virtual) struct. A backend is
// then its Impl: the op implementations (one file per family), supports(), and its memory.
// An op missing from Impl is a compile error naming it.
#pragma once
#include <string>
#include <utility>

#include "backend/backend.h"

namespace meshlm {

template <class Impl>
class KernelTable final : public Backend {
 public:
  template <class... Args>
  explicit KernelTable(Args&&... args) : impl_(std::forward<Args>(args)...) {}
  const char* name() const override { return impl_.name(); }
  std::string describe() const override { return impl_.describe(); }
  bool supports(Op op, DType dt) const override { return impl_.supports(op, dt); }
  bool host_addressable() const override {
    if constexpr (requires(const Impl& i) { i.host_addressable(); }) return impl_.host_addressable();
    return true;
  }
  void* allocate(size_t bytes) override { return impl_.allocate(bytes); }
  void deallocate(void* p, size_t bytes) override { impl_.deallocate(p, bytes); }

  Impl& impl() { return impl_; }

#define MESHLM_OP(R, name, family, key, params, args) \
  R name params override { return impl_.name args; }
#include "backend/ops.inc"
#undef MESHLM_OP

 private:
  Impl impl_;
};

}  // namespace meshlm
