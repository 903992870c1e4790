// Errors meshlm reports to users. Every failure a user can cause (bad file, bad flag, bad shape)
// is thrown as meshlm::Error with a one-line message naming the file/key and the problem; the
// command line prints it and exits non-zero. MESHLM_CHECK is for those checks, not for asserts.
#pragma once
#include <stdexcept>
#include <string>

namespace meshlm {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace meshlm

#define MESHLM_CHECK(cond, msg)                                  \
  do {                                                           \
    if (!(cond)) throw ::meshlm::Error(std::string() + msg);     \
  } while (0)
