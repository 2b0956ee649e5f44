// The one oneDNN CPU engine and stream every kernel of the addon runs on (addon.cc and bf16.cc).
#pragma once
#include "oneapi/dnnl/dnnl.hpp"

namespace dcd {

inline dnnl::engine& Engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}
inline dnnl::stream& Stream() {
  static dnnl::stream s(Engine());
  return s;
}

}  // namespace dcd
