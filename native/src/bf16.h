// bf16 compute for dcd's native backend: the precision switch that addon.cc's convolutions and
// matmuls read, fp32 -> bf16 conversion, and the certified (exact) bf16 retrieval kernels
// (bf16.cc).
#pragma once
#include <napi.h>

#include <cstdint>

namespace dcd {

// Whether convolutions, matmuls and linear layers take bf16 inputs (fp32 accumulation and fp32
// output). Set by setPrecision(); only ever true where Bf16Available().
extern bool g_bf16;

// Whether this CPU has bf16 dot-product units oneDNN uses (avx512_core_bf16 or AMX), as limited
// by ONEDNN_MAX_CPU_ISA.
bool Bf16Available();

// y[i] = x[i] rounded to the nearest bf16 (ties to even; NaN stays NaN), both threads above 2^18.
void ToBf16(const float* x, uint16_t* y, int64_t n);

// A per-slot scratch buffer of at least `bytes` bytes, kept between calls (grows, never shrinks).
void* Scratch(int slot, size_t bytes);

// Adds setPrecision, getPrecision, bf16Available, toBf16, prepareRows, nearestRows, knnRows.
void RegisterBf16(Napi::Env env, Napi::Object exports);

}  // namespace dcd
