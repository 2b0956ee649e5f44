// Algorithm 1's candidate search on the native backend (src/retrieval/select.ts): for every seed,
// the cap nearest pool rows of the seed's class by the float64 squared distance (ties: lower pool
// row), over a pool streamed in chunks.
//
// One call per chunk: the chunk's rows are bucketed by class here (no per-class gathers or tiny
// GEMMs in JS), each (class, group of ≤ 4 seeds) runs as one OpenMP task over the class's rows:
// fp32 dot products screen every pair, and only a pair whose screening distance can still reach
// the seed's running cap-th float64 distance (within the rigorous bound SelectBound) gets its
// float64 distance computed and offered to the seed's heap. The heaps live in JS typed arrays, so
// the state between chunks is plain data.
//
// No FMA contraction in this file: ExactSqDist4 must round exactly as JavaScript's loop in
// src/retrieval/knn.ts (exactSqDist) does, so the distances agree with JS to the last bit.
#pragma GCC optimize("fp-contract=off")

#include "select.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <utility>
#include <vector>

#include "guard.h"

namespace dcd {
namespace {

void Need(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(what);
}
size_t Len(const Napi::Value& v) { return v.As<Napi::TypedArray>().ElementLength(); }
template <typename T>
T* Ptr(const Napi::Value& v) {
  auto t = v.As<Napi::TypedArray>();
  return reinterpret_cast<T*>(static_cast<char*>(t.ArrayBuffer().Data()) + t.ByteOffset());
}
template <typename T>
T* PtrOrNull(const Napi::Value& v) {
  return v.IsTypedArray() ? Ptr<T>(v) : nullptr;
}

// heapBase: per-seed offsets into the heap arrays as a Float64Array of exact integers (64-bit: the
// heaps of all seeds together may pass 2³¹ entries), checked to start at 0, be non-decreasing, and
// give each seed at most 2³¹ − 1 entries (a heap's size and index are int32).
std::vector<int64_t> HeapBase(const Napi::Value& v, const char* fn) {
  Need(v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_float64_array, fn);
  const double* b = Ptr<double>(v);
  const size_t n = Len(v);
  Need(n >= 1 && b[0] == 0, fn);
  std::vector<int64_t> out(n);
  for (size_t q = 0; q < n; q++) {
    Need(b[q] >= 0 && b[q] <= 9007199254740992.0 && b[q] == std::floor(b[q]), fn);
    out[q] = static_cast<int64_t>(b[q]);
    Need(q == 0 || (out[q] >= out[q - 1] && out[q] - out[q - 1] <= INT32_MAX), fn);
  }
  return out;
}

// float64 squared distances of four pairs of fp32 rows (a[p], b[p]), each summed in the order of
// src/retrieval/knn.ts's exactSqDist (so bit-identical to it); four independent chains at once for
// instruction-level parallelism.
inline void ExactSqDist4(const float* const a[4], const float* const b[4], int64_t dim, double out[4]) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (int64_t c = 0; c < dim; c++) {
    const double d0 = static_cast<double>(a[0][c]) - static_cast<double>(b[0][c]);
    const double d1 = static_cast<double>(a[1][c]) - static_cast<double>(b[1][c]);
    const double d2 = static_cast<double>(a[2][c]) - static_cast<double>(b[2][c]);
    const double d3 = static_cast<double>(a[3][c]) - static_cast<double>(b[3][c]);
    s0 += d0 * d0, s1 += d1 * d1, s2 += d2 * d2, s3 += d3 * d3;
  }
  out[0] = s0, out[1] = s1, out[2] = s2, out[3] = s3;
}

// float64 squared norm (any summation order: only the bound uses it).
inline double SqNorm(const float* a, int64_t dim) {
  double s[4] = {0, 0, 0, 0};
  int64_t c = 0;
  for (; c + 4 <= dim; c += 4)
    for (int l = 0; l < 4; l++) s[l] += static_cast<double>(a[c + l]) * static_cast<double>(a[c + l]);
  for (; c < dim; c++) s[0] += static_cast<double>(a[c]) * static_cast<double>(a[c]);
  return (s[0] + s[1]) + (s[2] + s[3]);
}

// |s̃ − d| for the screening distance s̃ = ‖x‖² + ‖y‖² − 2·dot32(x, y) (norms and combination in
// float64, the dot product accumulated in fp32 in any order, FMA or not) against d = ExactSqDist4's float64 distance,
// with nx = ‖x‖, ny = ‖y‖ and K = dim (the scheme of ScreenBound in bf16.cc, without bf16 rounding
// or centring):
//  - fp32 accumulation of K products in any order: ≤ γ(K+1)·Σ|xᵢyᵢ| ≤ γ(K+1)·nx·ny, γ(m) = m·2⁻²⁴/(1 − m·2⁻²⁴),
//    twice for the factor 2;
//  - flushed denormals (should the thread run with DAZ/FTZ): ≤ K·2⁻¹²⁰·(1 + nx + ny), twice;
//  - float64: the norms, the combination and ExactSqDist4's own rounding, each ≤ (K + 4)·2⁻⁵³·(nx + ny)²:
//    (K + 8)·2⁻⁵¹·(nx + ny)² covers them together.
// The sum, times 1 + 1e-6 for the rounding of this formula itself.
struct SelectBound {
  double rel, abs, sq;
  explicit SelectBound(int64_t k) {
    const double u32 = std::ldexp(1.0, -24), m = static_cast<double>(k + 1);
    rel = m * u32 / (1 - m * u32);
    abs = static_cast<double>(k) * std::ldexp(1.0, -120);
    sq = static_cast<double>(k + 8) * std::ldexp(1.0, -51);
  }
  double operator()(double nx, double ny) const {
    return (2 * (rel * nx * ny + abs * (1 + nx + ny)) + sq * (nx + ny) * (nx + ny)) * (1 + 1e-6);
  }
};

// fp32 dot products of rows R[0..3] with seeds S[0..3]: out[i][j] = dot(R[i], S[j]) (any order).
inline void Dot4x4(const float* const R[4], const float* const S[4], int64_t dim, float out[4][4]) {
#if defined(__AVX512F__)
  __m512 acc[4][4];
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= dim; c += 16) {
    __m512 r[4];
    for (int i = 0; i < 4; i++) r[i] = _mm512_loadu_ps(R[i] + c);
    for (int j = 0; j < 4; j++) {
      const __m512 s = _mm512_loadu_ps(S[j] + c);
      for (int i = 0; i < 4; i++) acc[i][j] = _mm512_fmadd_ps(r[i], s, acc[i][j]);
    }
  }
  if (c < dim) {
    const __mmask16 m = static_cast<__mmask16>((1u << (dim - c)) - 1);
    __m512 r[4];
    for (int i = 0; i < 4; i++) r[i] = _mm512_maskz_loadu_ps(m, R[i] + c);
    for (int j = 0; j < 4; j++) {
      const __m512 s = _mm512_maskz_loadu_ps(m, S[j] + c);
      for (int i = 0; i < 4; i++) acc[i][j] = _mm512_fmadd_ps(r[i], s, acc[i][j]);
    }
  }
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 4; j++) out[i][j] = _mm512_reduce_add_ps(acc[i][j]);
#else
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 4; j++) {
      float s = 0;
      for (int64_t c = 0; c < dim; c++) s += R[i][c] * S[j][c];
      out[i][j] = s;
    }
#endif
}

// The running top-cap of one seed: a max-heap of (distance, pool row) in the caller's arrays,
// ordered by distance, then row (the worst entry at the root).
struct Heap {
  double* d;
  int32_t* j;
  int32_t* size;
  int32_t cap;
  static bool Worse(double da, int32_t ja, double db, int32_t jb) { return da > db || (da == db && ja > jb); }
  bool Full() const { return *size >= cap; }
  double Top() const { return d[0]; }
  void Push(double dv, int32_t jv) {
    int32_t s = *size;
    if (s < cap) {
      int32_t p = s;
      while (p > 0) {
        const int32_t par = (p - 1) >> 1;
        if (!Worse(dv, jv, d[par], j[par])) break;
        d[p] = d[par], j[p] = j[par], p = par;
      }
      d[p] = dv, j[p] = jv, *size = s + 1;
      return;
    }
    if (!Worse(d[0], j[0], dv, jv)) return;
    int32_t p = 0;
    for (;;) {
      const int32_t l = 2 * p + 1;
      if (l >= cap) break;
      int32_t m = l;
      if (l + 1 < cap && Worse(d[l + 1], j[l + 1], d[l], j[l])) m = l + 1;
      if (!Worse(d[m], j[m], dv, jv)) break;
      d[p] = d[m], j[p] = j[m], p = m;
    }
    d[p] = dv, j[p] = jv;
  }
};

// alg1Chunk(seeds f32 [ns, dim], dim, slotOfLabel i32 [L], slotStart i32 [nSlots + 1],
//   slotSeeds i32 [slotStart[nSlots]], rows f32 [r, dim], labels i32 [r] | null,
//   eligible u8 [r] | null, rowIds i32 [r], heapBase f64 [ns + 1], heapD f64, heapJ i32,
//   heapSize i32 [ns], counts f64 [nSlots], kept u8 [r]) -> float64 distances computed.
// Screening is fp32 only: the dot products are a small part of a pass over the pool (see
// bench/retrieval-results.md), so bf16 screening would change nothing measurable.
// Offers the chunk's rows to the heaps of the seeds of their class: a row with label y belongs to
// slot slotOfLabel[y] (none when y is outside [0, L) or the entry is −1; every row belongs to slot 0
// when labels is null); the slot's seeds are slotSeeds[slotStart[s] .. slotStart[s + 1]). Rows with
// eligible[a] = 0 are skipped. rowIds[a] is row a's pool row (the heaps' second key), strictly
// increasing within a chunk and across chunks. counts[s] += the slot's rows; kept[a] = 1 for the
// rows that are in some heap after the call.
Napi::Value Alg1Chunk(const Napi::CallbackInfo& info) {
  Need(info.Length() == 15, "alg1Chunk: expected 15 arguments");
  const int64_t dim = info[1].As<Napi::Number>().Int64Value();
  Need(dim > 0 && Len(info[0]) % dim == 0 && Len(info[5]) % dim == 0, "alg1Chunk: seeds or rows are not [*, dim]");
  const int64_t ns = static_cast<int64_t>(Len(info[0])) / dim, r = static_cast<int64_t>(Len(info[5])) / dim;
  const float* seeds = Ptr<float>(info[0]);
  const int32_t* slotOf = Ptr<int32_t>(info[2]);
  const int64_t nLabels = static_cast<int64_t>(Len(info[2]));
  const int32_t* slotStart = Ptr<int32_t>(info[3]);
  const int64_t nSlots = static_cast<int64_t>(Len(info[3])) - 1;
  const int32_t* slotSeeds = Ptr<int32_t>(info[4]);
  const float* rows = Ptr<float>(info[5]);
  const int32_t* labels = PtrOrNull<int32_t>(info[6]);
  const uint8_t* eligible = PtrOrNull<uint8_t>(info[7]);
  const int32_t* rowIds = Ptr<int32_t>(info[8]);
  const std::vector<int64_t> base = HeapBase(info[9], "alg1Chunk: heapBase must be a Float64Array of non-decreasing integer offsets from 0, ≤ 2³¹ − 1 apart");
  double* heapD = Ptr<double>(info[10]);
  int32_t* heapJ = Ptr<int32_t>(info[11]);
  int32_t* heapSize = Ptr<int32_t>(info[12]);
  double* counts = Ptr<double>(info[13]);
  uint8_t* kept = Ptr<uint8_t>(info[14]);
  Need(nSlots >= 0 && static_cast<int64_t>(Len(info[4])) == slotStart[nSlots], "alg1Chunk: slotSeeds does not match slotStart");
  for (int64_t t = 0; t < slotStart[nSlots]; t++) Need(slotSeeds[t] >= 0 && slotSeeds[t] < ns, "alg1Chunk: slotSeeds has a seed out of range");
  for (int64_t s = 0; s < nSlots; s++) Need(slotStart[s] <= slotStart[s + 1], "alg1Chunk: slotStart is not non-decreasing");
  Need(!labels || static_cast<int64_t>(Len(info[6])) == r, "alg1Chunk: labels is not [r]");
  Need(!eligible || static_cast<int64_t>(Len(info[7])) == r, "alg1Chunk: eligible is not [r]");
  Need(static_cast<int64_t>(Len(info[8])) == r && static_cast<int64_t>(Len(info[14])) == r, "alg1Chunk: rowIds or kept is not [r]");
  for (int64_t a = 1; a < r; a++) Need(rowIds[a] > rowIds[a - 1], "alg1Chunk: rowIds must increase");
  Need(static_cast<int64_t>(base.size()) == ns + 1 && static_cast<int64_t>(Len(info[12])) == ns, "alg1Chunk: heapBase / heapSize are not [ns + 1] / [ns]");
  Need(static_cast<int64_t>(Len(info[10])) >= base[ns] && static_cast<int64_t>(Len(info[11])) >= base[ns], "alg1Chunk: heap arrays shorter than heapBase says");
  Need(static_cast<int64_t>(Len(info[13])) == nSlots, "alg1Chunk: counts is not [nSlots]");
  for (int64_t q = 0; q < ns; q++) Need(heapSize[q] >= 0 && heapSize[q] <= base[q + 1] - base[q], "alg1Chunk: heapSize has a size outside [0, cap]");
  std::fill(kept, kept + r, 0);
  if (r == 0 || ns == 0 || nSlots == 0) return Napi::Number::New(info.Env(), 0);

  // Bucket the rows by slot (stable: rows stay in pool order within a slot).
  std::vector<int32_t> slot(r), start(nSlots + 1, 0), order;
  for (int64_t a = 0; a < r; a++) {
    int32_t s = -1;
    if (!eligible || eligible[a]) {
      if (!labels) s = 0;
      else if (labels[a] >= 0 && labels[a] < nLabels) s = slotOf[labels[a]];
    }
    Need(s < nSlots, "alg1Chunk: slotOfLabel has a slot out of range");
    slot[a] = s;
    if (s >= 0) start[s + 1]++;
  }
  for (int64_t s = 0; s < nSlots; s++) start[s + 1] += start[s], counts[s] += start[s + 1] - start[s];
  order.resize(start[nSlots]);
  {
    std::vector<int32_t> at(start.begin(), start.end() - 1);
    for (int64_t a = 0; a < r; a++)
      if (slot[a] >= 0) order[at[slot[a]]++] = static_cast<int32_t>(a);
  }
  std::vector<double> rowNorm(r, 0.0), seedNorm(ns);
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < static_cast<int64_t>(order.size()); t++) rowNorm[order[t]] = std::sqrt(SqNorm(rows + order[t] * dim, dim));
  for (int64_t q = 0; q < ns; q++) seedNorm[q] = std::sqrt(SqNorm(seeds + q * dim, dim));

  // Tasks: (slot, group of ≤ 4 of its seeds); no two tasks share a seed, so none share a heap.
  std::vector<std::pair<int32_t, int32_t>> tasks;
  for (int64_t s = 0; s < nSlots; s++)
    if (start[s + 1] > start[s])
      for (int32_t t = slotStart[s]; t < slotStart[s + 1]; t += 4) tasks.emplace_back(static_cast<int32_t>(s), t);
  const SelectBound E(dim);
  int64_t exact = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : exact)
  for (int64_t w = 0; w < static_cast<int64_t>(tasks.size()); w++) {
    const int32_t s = tasks[w].first, g0 = tasks[w].second;
    const int ng = std::min<int32_t>(4, slotStart[s + 1] - g0);
    int32_t q[4];
    const float* S[4];
    Heap h[4];
    for (int j = 0; j < 4; j++) {
      q[j] = slotSeeds[g0 + std::min(j, ng - 1)];
      S[j] = seeds + static_cast<int64_t>(q[j]) * dim;
      h[j] = Heap{heapD + base[q[j]], heapJ + base[q[j]], heapSize + q[j], static_cast<int32_t>(base[q[j] + 1] - base[q[j]])};
    }
    const int32_t* rs = order.data() + start[s];
    const int64_t nr = start[s + 1] - start[s];
    for (int64_t t = 0; t < nr; t += 4) {
      const int nb = static_cast<int>(std::min<int64_t>(4, nr - t));
      const float* R[4];
      for (int i = 0; i < 4; i++) R[i] = rows + static_cast<int64_t>(rs[t + std::min(i, nb - 1)]) * dim;
      float dot[4][4];
      Dot4x4(R, S, dim, dot);
      // The pairs of this 4 × 4 block that may enter their seed's heap (tested against the tops
      // before any of the block's pushes: a superset, so nothing is lost), then their float64
      // distances four at a time. A heap's final content does not depend on the push order.
      int np = 0;
      int pi[16], pj[16];
      for (int i = 0; i < nb; i++) {
        const double rn = rowNorm[rs[t + i]], rn2 = rn * rn;
        for (int j = 0; j < ng; j++) {
          if (h[j].cap <= 0) continue;
          if (h[j].Full()) {
            const double sn = seedNorm[q[j]];
            const double screen = rn2 + sn * sn - 2.0 * static_cast<double>(dot[i][j]);
            // d ≥ screen − E > the cap-th float64 distance: the pair cannot enter the heap
            if (screen - E(rn, sn) > h[j].Top()) continue;
          }
          pi[np] = i, pj[np] = j, np++;
        }
      }
      for (int u = 0; u < np; u += 4) {
        const float* A[4];
        const float* B[4];
        for (int v = 0; v < 4; v++) {
          const int w = u + std::min(v, np - 1 - u);
          A[v] = R[pi[w]], B[v] = S[pj[w]];
        }
        double d[4];
        ExactSqDist4(A, B, dim, d);
        for (int v = 0; v < 4 && u + v < np; v++) h[pj[u + v]].Push(d[v], rowIds[rs[t + pi[u + v]]]);
      }
      exact += np;
    }
  }
  // Rows of this chunk still held: pool rows ≥ this chunk's first (earlier chunks' rows are lower).
  const int32_t first = rowIds[0];
  for (int64_t qq = 0; qq < ns; qq++)
    for (int64_t t = base[qq]; t < base[qq] + heapSize[qq]; t++)
      if (heapJ[t] >= first) {
        const int32_t* at = std::lower_bound(rowIds, rowIds + r, heapJ[t]);
        if (at != rowIds + r && *at == heapJ[t]) kept[at - rowIds] = 1;
      }
  return Napi::Number::New(info.Env(), static_cast<double>(exact));
}

// alg1Sort(heapBase f64 [ns + 1], heapD f64, heapJ i32, heapSize i32 [ns]): sorts each seed's
// entries ascending by (distance, row), in place.
Napi::Value Alg1Sort(const Napi::CallbackInfo& info) {
  Need(info.Length() == 4, "alg1Sort: expected 4 arguments");
  const std::vector<int64_t> base = HeapBase(info[0], "alg1Sort: heapBase must be a Float64Array of non-decreasing integer offsets from 0, ≤ 2³¹ − 1 apart");
  const int64_t ns = static_cast<int64_t>(base.size()) - 1;
  double* d = Ptr<double>(info[1]);
  int32_t* j = Ptr<int32_t>(info[2]);
  const int32_t* size = Ptr<int32_t>(info[3]);
  Need(ns >= 0 && static_cast<int64_t>(Len(info[3])) == ns, "alg1Sort: heapSize is not [ns]");
  Need(static_cast<int64_t>(Len(info[1])) >= base[ns] && static_cast<int64_t>(Len(info[2])) >= base[ns], "alg1Sort: heap arrays shorter than heapBase says");
#pragma omp parallel for schedule(dynamic, 8)
  for (int64_t q = 0; q < ns; q++) {
    const int64_t b = base[q];
    const int32_t n = std::min<int64_t>(size[q], base[q + 1] - b);
    std::vector<std::pair<double, int32_t>> e(n);
    for (int32_t t = 0; t < n; t++) e[t] = {d[b + t], j[b + t]};
    std::sort(e.begin(), e.end());
    for (int32_t t = 0; t < n; t++) d[b + t] = e[t].first, j[b + t] = e[t].second;
  }
  return info.Env().Undefined();
}

}  // namespace

void RegisterSelect(Napi::Env env, Napi::Object exports) {
#define EXPORT(name, fn) exports.Set(name, Napi::Function::New(env, Guard<fn>, name))
  EXPORT("alg1Chunk", Alg1Chunk);
  EXPORT("alg1Sort", Alg1Sort);
#undef EXPORT
}

}  // namespace dcd
