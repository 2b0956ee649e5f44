// bf16 compute and certified retrieval kernels (see bf16.h).
//
// Retrieval: k-NN and nearest-row joins screen every pair with a low-precision squared distance
// (bf16 inputs, fp32 accumulation; or fp32 inputs), then compute the float64 distance of every
// pair whose screening distance lies within a rigorous bound of the k-th / the minimum, and rank
// by that. The bound (ScreenBound) covers the bf16 rounding of both inputs, fp32 accumulation in
// any order, the centring and the norms, so the answer is the float64 one: the same rows, in the
// same order, with the same tie-break (lower index), for either screening precision.
//
// No FMA contraction in this file: ExactSqDist must round exactly as JavaScript's loop in
// src/retrieval/knn.ts (exactSqDist) does, so both sides agree to the last bit.
#pragma GCC optimize("fp-contract=off")

#include "bf16.h"
#include "engine.h"
#include "guard.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"

namespace dcd {

using dnnl::memory;
using dt = dnnl::memory::data_type;

bool g_bf16 = false;

namespace {

constexpr int64_t kGrain = 1 << 18;

inline uint16_t Bf16Round(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1u);                                                       // round to nearest, ties to even
  return static_cast<uint16_t>(u >> 16);
}

}  // namespace

bool Bf16Available() {
  static const bool ok = [] {
    auto isa = dnnl::get_effective_cpu_isa();
    return isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_amx;
  }();
  return ok;
}

void ToBf16(const float* x, uint16_t* y, int64_t n) {
#pragma omp parallel for if (n >= kGrain) schedule(static)
  for (int64_t i = 0; i < n; i++) y[i] = Bf16Round(x[i]);
}

void* Scratch(int slot, size_t bytes) {
  struct Buf {
    void* p = nullptr;
    size_t n = 0;
  };
  static Buf bufs[8];
  Buf& b = bufs[slot];
  if (b.n < bytes) {
    std::free(b.p);
    size_t n = (std::max(bytes, b.n + b.n / 2) + 63) / 64 * 64;
    b.p = std::aligned_alloc(64, n);
    if (!b.p) throw std::runtime_error("out of memory for a scratch buffer");
    b.n = n;
  }
  return b.p;
}

namespace {

// ---------------------------------------------------------------------------------------------
// Screening distances and their error bound.

// Row-major [rows, dim] rows of one side, centred (x − μ) and converted to the screening
// precision, with the float64 squared norms of the centred rows.
struct Screen {
  const void* data;  // bf16 or fp32, [rows, dim]
  const double* n2;  // [rows]
  int64_t rows;
};

// |d̃ − d| for the screening distance d̃ = ‖x̂‖² + ‖ŷ‖² − 2·dot(bf16(x̂), bf16(ŷ)) (norms and the
// combination in float64, the dot product accumulated in fp32 in any order) of x̂ = fl32(x − μ),
// ŷ = fl32(y − μ), against the float64 distance d = ‖x − y‖², with nx = ‖x̂‖, ny = ‖ŷ‖:
//  - bf16 rounding (u = 2⁻⁸ each) makes each product x̃ᵢỹᵢ differ from x̂ᵢŷᵢ by ≤ (2u + u²)|x̂ᵢŷᵢ|;
//  - fp32 accumulation of k products (each possibly rounded too) in any order adds
//    ≤ γ(k+1)·Σ|x̃ᵢỹᵢ| ≤ γ(k+1)(1+u)²·Σ|x̂ᵢŷᵢ|, γ(m) = m·2⁻²⁴/(1 − m·2⁻²⁴); Σ|x̂ᵢŷᵢ| ≤ nx·ny;
//  - denormals flushed to zero (DAZ/FTZ) add ≤ 2⁻¹²⁶ per operation: k·2⁻¹²⁰·(1 + nx + ny) covers it;
//  - centring: x̂ = (x − μ)(1 + δ), |δ| ≤ 2⁻²⁴ elementwise, moves ‖x̂ − ŷ‖² from ‖x − y‖² by
//    ≤ 2.01·2⁻²⁴·(nx + ny)²;
//  - the float64 norms and combination: ≤ (k + 8)·2⁻⁵²·(nx + ny)².
// The sum, times 1 + 1e-6 for the rounding of this formula itself.
struct Bound {
  double rel, abs, sq;
  double operator()(double nx, double ny) const {
    return (2 * (rel * nx * ny + abs * (1 + nx + ny)) + sq * (nx + ny) * (nx + ny)) * (1 + 1e-6);
  }
};
Bound ScreenBound(bool bf, int64_t k) {
  const double u32 = std::ldexp(1.0, -24), u = bf ? std::ldexp(1.0, -8) : 0.0;
  const double m = static_cast<double>(k + 1);
  const double g = m * u32 / (1 - m * u32);
  return {(2 * u + u * u) + g * (1 + u) * (1 + u), static_cast<double>(k) * std::ldexp(1.0, -120),
          2.01 * u32 + static_cast<double>(k + 8) * std::ldexp(1.0, -52)};
}

// float64 squared distance of two fp32 rows, in the order of src/retrieval/knn.ts's exactSqDist.
inline double ExactSqDist(const float* a, const float* b, int64_t dim) {
  double s = 0;
  for (int64_t c = 0; c < dim; c++) {
    double d = static_cast<double>(a[c]) - static_cast<double>(b[c]);
    s += d * d;
  }
  return s;
}

// Centres rows (x − μ, rounded to fp32), converts them to the screening precision into `out`
// and writes their float64 squared norms. rows[i] is row which[i] of x (or row i without which).
void CentreRows(const float* x, const int32_t* which, int64_t r, int64_t dim, const float* mu, bool bf, void* out, double* n2) {
#pragma omp parallel for if (r * dim >= kGrain) schedule(static)
  for (int64_t i = 0; i < r; i++) {
    const float* row = x + (which ? static_cast<int64_t>(which[i]) : i) * dim;
    double s = 0;
    for (int64_t c = 0; c < dim; c++) {
      float v = row[c] - mu[c];
      s += static_cast<double>(v) * static_cast<double>(v);
      if (bf) static_cast<uint16_t*>(out)[i * dim + c] = Bf16Round(v);
      else static_cast<float*>(out)[i * dim + c] = v;
    }
    n2[i] = s;
  }
}

// The screening dot products of S rows [s0, s0+m) and W rows [0, n) of a W tile: out [m, n]
// (fp32). The W tile is reordered once into the matmul's own weights layout (the caller passes
// the same `packed` state for every S block of one W tile): with W's rows handed over as
// transposed plain weights, brgemm re-packed them for every block of S rows and ran 3-5× slower.
struct DotPrim {
  dnnl::matmul::primitive_desc pd;
  dnnl::matmul prim;
  dnnl::reorder pack;
};
struct Packed {
  const void* w = nullptr;  // the W tile it holds (nullptr: none)
  memory::desc desc;
  void* buf = nullptr;
};
void DotBlock(const Screen& S, int64_t s0, int64_t m, const void* wdata, int64_t n, int64_t k, bool bf, float* out, Packed& pk) {
  static std::unordered_map<std::string, DotPrim> cache;
  const dt t = bf ? dt::bf16 : dt::f32;
  const size_t es = bf ? 2 : 4;
  memory::desc sd({m, k}, t, memory::dims{k, 1}), wplain({k, n}, t, memory::dims{1, k}), od({m, n}, dt::f32, memory::dims{n, 1});
  int64_t key[4] = {m, n, k, bf ? 1 : 0};
  std::string ks(reinterpret_cast<const char*>(key), sizeof key);
  auto it = cache.find(ks);
  if (it == cache.end()) {
    if (cache.size() >= 64) cache.clear();
    memory::desc wany({k, n}, t, memory::format_tag::any);
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(sd, wany, od), Engine());
    dnnl::reorder pack(dnnl::reorder::primitive_desc(Engine(), wplain, Engine(), pd.weights_desc()));
    it = cache.emplace(ks, DotPrim{pd, dnnl::matmul(pd), pack}).first;
  }
  DotPrim& e = it->second;
  if (pk.w != wdata || !(pk.desc == e.pd.weights_desc())) {
    pk.buf = Scratch(5, e.pd.weights_desc().get_size());
    memory from(wplain, Engine(), const_cast<void*>(wdata)), to(e.pd.weights_desc(), Engine(), pk.buf);
    e.pack.execute(Stream(), {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}});
    pk.w = wdata;
    pk.desc = e.pd.weights_desc();
  }
  const char* sp = static_cast<const char*>(S.data) + s0 * k * es;
  memory sm(sd, Engine(), const_cast<char*>(sp)), wm(e.pd.weights_desc(), Engine(), pk.buf), om(od, Engine(), out);
  e.prim.execute(Stream(), {{DNNL_ARG_SRC, sm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, om}});
  Stream().wait();
}

constexpr int64_t kTileS = 1024, kTileW = 2048;

double MaxNorm(const double* n2, int64_t a, int64_t b) {
  double m = 0;
  for (int64_t i = a; i < b; i++) m = std::max(m, n2[i]);
  return std::sqrt(m);
}

// For each S row i, the W row j with the smallest float64 distance (ties: lower j), certified:
// exact distances are computed for the pairs whose screening distance can still reach the
// minimum. sRow(i) / wRow(j): the fp32 rows. Returns the number of exact distances computed.
template <typename SR, typename WR>
int64_t NearestCertified(const Screen& S, const Screen& W, int64_t dim, bool bf, SR sRow, WR wRow, int32_t* idx, double* best) {
  const Bound E = ScreenBound(bf, dim);
  for (int64_t i = 0; i < S.rows; i++) idx[i] = -1, best[i] = INFINITY;
  if (S.rows == 0 || W.rows == 0) return 0;
  int64_t checked = 0;
  const int64_t ts = std::min(kTileS, S.rows), tw = std::min(kTileW, W.rows);
  float* blk = static_cast<float*>(Scratch(0, static_cast<size_t>(ts * tw) * 4));
  for (int64_t w0 = 0; w0 < W.rows; w0 += tw) {
    const int64_t n = std::min(tw, W.rows - w0);
    const double wmax = MaxNorm(W.n2, w0, w0 + n);
    Packed pk;
    const void* wdata = static_cast<const char*>(W.data) + w0 * dim * (bf ? 2 : 4);
    for (int64_t s0 = 0; s0 < S.rows; s0 += ts) {
      const int64_t m = std::min(ts, S.rows - s0);
      DotBlock(S, s0, m, wdata, n, dim, bf, blk, pk);
#pragma omp parallel for reduction(+ : checked) schedule(static)
      for (int64_t a = 0; a < m; a++) {
        const int64_t i = s0 + a;
        const float* row = blk + a * n;
        const double sn2 = S.n2[i];
        double lo = INFINITY;
        for (int64_t c = 0; c < n; c++) lo = std::min(lo, sn2 + W.n2[w0 + c] - 2.0 * static_cast<double>(row[c]));
        const double e = E(std::sqrt(sn2), wmax);
        // the true minimum is ≤ lo + e, so its screening distance is ≤ lo + 2e; to beat or tie
        // the best so far, a row's screening distance must be ≤ best + e
        const double thr = std::min(lo + 2 * e, best[i] + e);
        for (int64_t c = 0; c < n; c++) {
          if (sn2 + W.n2[w0 + c] - 2.0 * static_cast<double>(row[c]) > thr) continue;
          const int64_t j = w0 + c;
          const double d = ExactSqDist(sRow(i), wRow(j), dim);
          checked++;
          if (d < best[i] || (d == best[i] && j < idx[i])) best[i] = d, idx[i] = static_cast<int32_t>(j);
        }
      }
    }
  }
  return checked;
}

float* F32(const Napi::Value& v) { return v.As<Napi::Float32Array>().Data(); }
size_t Len(const Napi::Value& v) { return v.As<Napi::TypedArray>().ElementLength(); }
size_t Bytes(const Napi::Value& v) { return v.As<Napi::TypedArray>().ByteLength(); }
void* Raw(const Napi::Value& v) {
  auto t = v.As<Napi::TypedArray>();
  return static_cast<char*>(t.ArrayBuffer().Data()) + t.ByteOffset();
}
int32_t* I32(const Napi::Value& v) { return v.As<Napi::Int32Array>().Data(); }
double* F64(const Napi::Value& v) { return v.As<Napi::Float64Array>().Data(); }
void Need(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(what);
}
// precision argument: 0 fp32, 1 bf16 (refused where the CPU has no bf16 units)
bool PrecisionArg(const Napi::Value& v) {
  int p = v.As<Napi::Number>().Int32Value();
  Need(p == 0 || p == 1, "precision must be 0 (fp32) or 1 (bf16)");
  Need(p == 0 || Bf16Available(), "bf16 is not available on this CPU (no avx512_bf16 / AMX, or ONEDNN_MAX_CPU_ISA hides it)");
  return p == 1;
}

// setPrecision(0|1): conv/matmul/linear compute precision. Returns the precision now in effect
// (1 is refused, returning 0, where bf16 is unavailable).
Napi::Value SetPrecision(const Napi::CallbackInfo& info) {
  int p = info[0].As<Napi::Number>().Int32Value();
  g_bf16 = p == 1 && Bf16Available();
  return Napi::Number::New(info.Env(), g_bf16 ? 1 : 0);
}
Napi::Value GetPrecision(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), g_bf16 ? 1 : 0); }
Napi::Value Bf16AvailableJs(const Napi::CallbackInfo& info) {
  auto isa = dnnl::get_effective_cpu_isa();
  const char* name = isa == dnnl::cpu_isa::avx512_core_amx    ? "avx512_core_amx"
                     : isa == dnnl::cpu_isa::avx512_core_bf16 ? "avx512_core_bf16"
                     : isa == dnnl::cpu_isa::avx512_core_vnni ? "avx512_core_vnni"
                     : isa == dnnl::cpu_isa::avx512_core      ? "avx512_core"
                     : isa == dnnl::cpu_isa::avx2_vnni        ? "avx2_vnni"
                     : isa == dnnl::cpu_isa::avx2             ? "avx2"
                                                              : "other";
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("available", Bf16Available());
  o.Set("isa", name);
  return o;
}

// toBf16(x Float32Array, y Uint16Array): y = bf16(x), round to nearest even.
Napi::Value ToBf16Js(const Napi::CallbackInfo& info) {
  Need(Len(info[1]) >= Len(info[0]), "toBf16: output shorter than input");
  ToBf16(F32(info[0]), static_cast<uint16_t*>(Raw(info[1])), static_cast<int64_t>(Len(info[0])));
  return info.Env().Undefined();
}

// prepareRows(x f32 [n, dim], dim, precision, mu f32 [dim], computeMu, out (n·dim bf16 or fp32),
// n2 f64 [n]): the screening form of held rows (centred on mu; with computeMu, mu is first set to
// the rows' mean).
Napi::Value PrepareRows(const Napi::CallbackInfo& info) {
  const int64_t dim = info[1].As<Napi::Number>().Int64Value();
  Need(dim > 0 && Len(info[0]) % dim == 0, "prepareRows: x is not [n, dim]");
  const int64_t n = static_cast<int64_t>(Len(info[0])) / dim;
  const bool bf = PrecisionArg(info[2]);
  float* mu = F32(info[3]);
  Need(static_cast<int64_t>(Len(info[3])) == dim, "prepareRows: mu is not [dim]");
  Need(static_cast<int64_t>(Bytes(info[5])) >= n * dim * (bf ? 2 : 4), "prepareRows: output buffer too small");
  Need(static_cast<int64_t>(Len(info[6])) >= n, "prepareRows: norms buffer too small");
  const float* x = F32(info[0]);
  if (info[4].As<Napi::Boolean>().Value()) {
    std::vector<double> s(dim, 0.0);
    for (int64_t i = 0; i < n; i++)
      for (int64_t c = 0; c < dim; c++) s[c] += x[i * dim + c];
    for (int64_t c = 0; c < dim; c++) mu[c] = n > 0 ? static_cast<float>(s[c] / n) : 0.f;
  }
  CentreRows(x, nullptr, n, dim, mu, bf, Raw(info[5]), F64(info[6]));
  return info.Env().Undefined();
}

// nearestRows(held f32 [nh, dim], heldScreen, heldN2 f64 [nh], mu f32 [dim], rows f32 [*, dim],
// which Int32Array [r] | null, r, dim, precision, perHeld, outIdx i32, outDist f64) -> exact
// distances computed. perHeld false: for each of the r rows, its nearest held row (outIdx in
// [0, nh)); true: for each held row, its nearest of the r rows (outIdx in [0, r), position in
// `which`). Distances are the float64 ones, ties to the lower index; -1 / Infinity when empty.
Napi::Value NearestRows(const Napi::CallbackInfo& info) {
  const int64_t dim = info[7].As<Napi::Number>().Int64Value();
  const bool bf = PrecisionArg(info[8]);
  const bool perHeld = info[9].As<Napi::Boolean>().Value();
  Need(dim > 0 && Len(info[0]) % dim == 0, "nearestRows: held is not [nh, dim]");
  const int64_t nh = static_cast<int64_t>(Len(info[0])) / dim;
  const int64_t r = info[6].As<Napi::Number>().Int64Value();
  const float* held = F32(info[0]);
  const float* rows = F32(info[4]);
  const int32_t* which = info[5].IsTypedArray() ? I32(info[5]) : nullptr;
  const int64_t nrows = static_cast<int64_t>(Len(info[4])) / dim;
  Need(static_cast<int64_t>(Bytes(info[1])) >= nh * dim * (bf ? 2 : 4) && static_cast<int64_t>(Len(info[2])) >= nh,
       "nearestRows: held screening rows do not match held (prepare them with the same precision)");
  Need(static_cast<int64_t>(Len(info[3])) == dim, "nearestRows: mu is not [dim]");
  if (which) {
    Need(static_cast<int64_t>(Len(info[5])) == r, "nearestRows: which has not r entries");
    for (int64_t i = 0; i < r; i++) Need(which[i] >= 0 && which[i] < nrows, "nearestRows: which has an index out of range");
  } else {
    Need(r <= nrows, "nearestRows: rows has fewer than r rows");
  }
  const int64_t nOut = perHeld ? nh : r;
  Need(static_cast<int64_t>(Len(info[10])) >= nOut && static_cast<int64_t>(Len(info[11])) >= nOut, "nearestRows: outputs too small");
  // the streamed rows in screening form (slot 1 holds them, slot 2 their norms)
  void* rs = Scratch(1, static_cast<size_t>(std::max<int64_t>(r, 1) * dim) * (bf ? 2 : 4));
  double* rn2 = static_cast<double*>(Scratch(2, static_cast<size_t>(std::max<int64_t>(r, 1)) * 8));
  CentreRows(rows, which, r, dim, F32(info[3]), bf, rs, rn2);
  Screen H{Raw(info[1]), F64(info[2]), nh}, R{rs, rn2, r};
  auto heldRow = [&](int64_t j) { return held + j * dim; };
  auto rowOf = [&](int64_t i) { return rows + (which ? static_cast<int64_t>(which[i]) : i) * dim; };
  int64_t checked = perHeld ? NearestCertified(H, R, dim, bf, heldRow, rowOf, I32(info[10]), F64(info[11]))
                            : NearestCertified(R, H, dim, bf, rowOf, heldRow, I32(info[10]), F64(info[11]));
  return Napi::Number::New(info.Env(), static_cast<double>(checked));
}

// knnRows(queries f32 [nq, dim], pool f32 [np, dim], dim, k, precision, outIdx i32 [nq·k],
// outDist f64 [nq·k]) -> exact distances computed. The k pool rows nearest to each query by the
// float64 distance, ascending (ties: lower index), padded with -1 / Infinity; screened in the
// given precision (pool centred on its mean), every pair that can reach the k-th re-ranked exactly.
Napi::Value KnnRows(const Napi::CallbackInfo& info) {
  const int64_t dim = info[2].As<Napi::Number>().Int64Value();
  const int64_t k = info[3].As<Napi::Number>().Int64Value();
  const bool bf = PrecisionArg(info[4]);
  Need(dim > 0 && Len(info[0]) % dim == 0 && Len(info[1]) % dim == 0, "knnRows: queries or pool is not [*, dim]");
  Need(k >= 1, "knnRows: k must be >= 1");
  const int64_t nq = static_cast<int64_t>(Len(info[0])) / dim, np = static_cast<int64_t>(Len(info[1])) / dim;
  Need(static_cast<int64_t>(Len(info[5])) >= nq * k && static_cast<int64_t>(Len(info[6])) >= nq * k, "knnRows: outputs too small");
  const float* q = F32(info[0]);
  const float* p = F32(info[1]);
  int32_t* oi = I32(info[5]);
  double* od = F64(info[6]);
  for (int64_t t = 0; t < nq * k; t++) oi[t] = -1, od[t] = INFINITY;
  if (nq == 0 || np == 0) return Napi::Number::New(info.Env(), 0);
  const size_t es = bf ? 2 : 4;
  // centre on the pool's mean (distances do not change; the norms, and with them the bound, shrink)
  std::vector<float> mu(dim);
  {
    std::vector<double> s(dim, 0.0);
    for (int64_t i = 0; i < np; i++)
      for (int64_t c = 0; c < dim; c++) s[c] += p[i * dim + c];
    for (int64_t c = 0; c < dim; c++) mu[c] = static_cast<float>(s[c] / np);
  }
  std::vector<char> qs(static_cast<size_t>(nq * dim) * es);
  std::vector<double> qn2(nq), pn2(np);
  CentreRows(q, nullptr, nq, dim, mu.data(), bf, qs.data(), qn2.data());
  const int64_t tw = std::min(kTileW, np), ts = std::min(kTileS, nq);
  std::vector<char> ps(static_cast<size_t>(tw * dim) * es);
  double pmax = 0;
#pragma omp parallel for reduction(max : pmax) schedule(static)
  for (int64_t j = 0; j < np; j++) {
    double s = 0;
    for (int64_t c = 0; c < dim; c++) {
      double v = static_cast<double>(p[j * dim + c] - mu[c]);
      s += v * v;
    }
    pn2[j] = s;
    pmax = std::max(pmax, s);
  }
  pmax = std::sqrt(pmax);
  const Bound E = ScreenBound(bf, dim);
  std::vector<double> eq(nq);
  for (int64_t i = 0; i < nq; i++) eq[i] = E(std::sqrt(qn2[i]), pmax);
  // per query: a max-heap of the k smallest screening distances, and the candidates (screening
  // distance, row) that can still be among the k nearest
  std::vector<std::vector<double>> heap(nq);
  std::vector<std::vector<std::pair<double, int32_t>>> cand(nq);
  float* blk = static_cast<float*>(Scratch(0, static_cast<size_t>(ts * tw) * 4));
  Screen Q{qs.data(), qn2.data(), nq};
  for (int64_t w0 = 0; w0 < np; w0 += tw) {
    const int64_t n = std::min(tw, np - w0);
    std::vector<double> tmp(n);
    CentreRows(p + w0 * dim, nullptr, n, dim, mu.data(), bf, ps.data(), tmp.data());
    Screen P{ps.data(), pn2.data() + w0, n};
    Packed pk;
    for (int64_t s0 = 0; s0 < nq; s0 += ts) {
      const int64_t m = std::min(ts, nq - s0);
      DotBlock(Q, s0, m, ps.data(), n, dim, bf, blk, pk);
#pragma omp parallel for schedule(dynamic, 16)
      for (int64_t a = 0; a < m; a++) {
        const int64_t i = s0 + a;
        const float* row = blk + a * n;
        auto& h = heap[i];
        auto& cs = cand[i];
        const double qn = qn2[i], e2 = 2 * eq[i];
        for (int64_t c = 0; c < n; c++) {
          const double d = qn + P.n2[c] - 2.0 * static_cast<double>(row[c]);
          const bool full = static_cast<int64_t>(h.size()) == k;
          if (full && d > h.front() + e2) continue;
          cs.emplace_back(d, static_cast<int32_t>(w0 + c));
          if (!full) {
            h.push_back(d);
            std::push_heap(h.begin(), h.end());
          } else if (d < h.front()) {
            std::pop_heap(h.begin(), h.end());
            h.back() = d;
            std::push_heap(h.begin(), h.end());
          }
        }
        if (static_cast<int64_t>(h.size()) == k && static_cast<int64_t>(cs.size()) > 4 * k + 256) {
          const double thr = h.front() + e2;
          cs.erase(std::remove_if(cs.begin(), cs.end(), [thr](const std::pair<double, int32_t>& x) { return x.first > thr; }), cs.end());
        }
      }
    }
  }
  int64_t checked = 0;
#pragma omp parallel for reduction(+ : checked) schedule(dynamic, 4)
  for (int64_t i = 0; i < nq; i++) {
    auto& h = heap[i];
    const double thr = static_cast<int64_t>(h.size()) == k ? h.front() + 2 * eq[i] : INFINITY;
    std::vector<std::pair<double, int32_t>> ex;
    for (auto& x : cand[i])
      if (x.first <= thr) ex.emplace_back(ExactSqDist(q + i * dim, p + static_cast<int64_t>(x.second) * dim, dim), x.second);
    checked += static_cast<int64_t>(ex.size());
    const int64_t take = std::min<int64_t>(k, static_cast<int64_t>(ex.size()));
    std::partial_sort(ex.begin(), ex.begin() + take, ex.end());
    for (int64_t t = 0; t < take; t++) oi[i * k + t] = ex[t].second, od[i * k + t] = ex[t].first;
    std::vector<std::pair<double, int32_t>>().swap(cand[i]);
  }
  return Napi::Number::New(info.Env(), static_cast<double>(checked));
}

}  // namespace

void RegisterBf16(Napi::Env env, Napi::Object exports) {
#define EXPORT(name, fn) exports.Set(name, Napi::Function::New(env, Guard<fn>, name))
  EXPORT("setPrecision", SetPrecision);
  EXPORT("getPrecision", GetPrecision);
  EXPORT("bf16Available", Bf16AvailableJs);
  EXPORT("toBf16", ToBf16Js);
  EXPORT("prepareRows", PrepareRows);
  EXPORT("nearestRows", NearestRows);
  EXPORT("knnRows", KnnRows);
#undef EXPORT
}

}  // namespace dcd
