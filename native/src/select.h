// Algorithm 1's candidate search for dcd's native backend (select.cc): per seed, the nearest pool
// rows of its class by float64 distance, over a streamed pool, screened in fp32 and certified.
#pragma once
#include <napi.h>

namespace dcd {

// Adds alg1Chunk and alg1Sort.
void RegisterSelect(Napi::Env env, Napi::Object exports);

}  // namespace dcd
