// Roofline of this CPU as oneDNN 2.6 sees it: the best GEMM rate of fp32 and of bf16 inputs (fp32
// accumulation and output), M = N = K = 2048 (weights pre-packed, as dcd's linear layers and
// retrieval kernels pack theirs), best of `iters`; plus the ISA oneDNN dispatches to.
//   g++ -O2 -std=c++17 native/bench/roofline.cc -ldnnl -o /tmp/roofline && /tmp/roofline [threads] [iters]
// (scripts/roofline.sh builds and runs it.)
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "oneapi/dnnl/dnnl.hpp"

using namespace dnnl;
using dt = memory::data_type;
using tag = memory::format_tag;

double Gemm(engine& e, stream& s, memory::dim n, dt in, int iters, const char** impl) {
  memory::desc a({n, n}, in, tag::ab), b({n, n}, in, tag::any), c({n, n}, dt::f32, tag::ab);
  matmul::primitive_desc pd(matmul::desc(a, b, c), e);
  *impl = pd.impl_info_str();
  memory A(a, e), B(pd.weights_desc(), e), C(c, e);
  std::memset(A.get_data_handle(), 0, a.get_size());
  std::memset(B.get_data_handle(), 0, pd.weights_desc().get_size());
  matmul p(pd);
  double best = 1e30;
  for (int i = 0; i < iters; i++) {
    auto t0 = std::chrono::steady_clock::now();
    p.execute(s, {{DNNL_ARG_SRC, A}, {DNNL_ARG_WEIGHTS, B}, {DNNL_ARG_DST, C}});
    s.wait();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return 2.0 * n * n * n / best / 1e9;
}

int main(int argc, char** argv) {
  if (argc > 1) omp_set_num_threads(std::atoi(argv[1]));
  int iters = argc > 2 ? std::atoi(argv[2]) : 10;
  engine e(engine::kind::cpu, 0);
  stream s(e);
  const char *i32 = "", *i16 = "";
  double f32 = Gemm(e, s, 2048, dt::f32, iters, &i32);
  double bf16 = Gemm(e, s, 2048, dt::bf16, iters, &i16);
  std::printf("threads %d  fp32 %.0f GFLOP/s (%s)  bf16 %.0f GFLOP/s (%s)  bf16/fp32 %.2fx\n", omp_get_max_threads(), f32, i32, bf16, i16,
              bf16 / f32);
}
