// Vector math for the kernels' loops. glibc ships SIMD versions of expf and logf (libmvec:
// _ZGVeN16v_expf etc., AVX-512 16 lanes) but declares them to the compiler only under
// -ffast-math, which meshlm does not use (it would also license reassociation and break the
// fixed reduction orders). Redeclaring the two functions with the `simd` attribute lets GCC
// call the vector versions from `#pragma omp simd` loops with IEEE semantics otherwise
// intact. libmvec's expf/logf are accurate to 1 ulp (glibc's published ulps for
// exp_vlen16/log_vlen16; test_kernels measures it), against ~0.5 ulp for the scalar ones;
// docs/numerics.md carries the difference into the tolerances. Link with -lmvec.
#pragma once
#include <cmath>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
extern "C" {
float expf(float) noexcept __attribute__((simd("notinbranch")));
float logf(float) noexcept __attribute__((simd("notinbranch")));
}
#endif
