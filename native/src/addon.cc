// dcd native CPU kernels for the tfjs `native` backend.
//
// Every entry point is synchronous, takes float32 typed arrays owned by JavaScript
// (inputs and a preallocated output), and keeps no per-call memory after it returns:
// the only state held between calls is oneDNN's engine, stream and its primitive cache.
// Layouts follow tfjs: activations NHWC, conv filters HWIO ([fh, fw, in, out]).
#include <napi.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <unordered_map>
#include <array>
#include <string>
#include <vector>

#include "bf16.h"
#include "engine.h"
#include "guard.h"
#include "select.h"
#include "oneapi/dnnl/dnnl.hpp"

using dnnl::algorithm;
using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

namespace {

dnnl::engine& eng() { return dcd::Engine(); }
dnnl::stream& strm() { return dcd::Stream(); }

float* F32(const Napi::Value& v) {
  return v.As<Napi::Float32Array>().Data();
}
size_t Len(const Napi::Value& v) { return v.As<Napi::TypedArray>().ElementLength(); }
int32_t* I32(const Napi::Value& v) { return v.As<Napi::Int32Array>().Data(); }

// Below this many elements one thread is faster: a parallel region costs a barrier, and on a
// busy machine a barrier can wait a whole scheduler slice for a descheduled thread.
constexpr int64_t kGrain = 1 << 18;

// Activation codes shared with src/backends/native.ts.
enum Act { kLinear = 0, kRelu = 1, kRelu6 = 2, kElu = 3, kLeaky = 4, kSigmoid = 5, kGelu = 6 };

// Post-ops of a fused conv/matmul: `act & 15` is the activation; `act & kSum` adds what the
// destination held before (a residual, copied there by CopyResidual) ahead of the activation.
constexpr int kSum = 16;
dnnl::primitive_attr ActAttr(int act, float alpha) {
  dnnl::primitive_attr attr;
  dnnl::post_ops po;
  if (act & kSum) po.append_sum(1.f);
  switch (act & 15) {
    case kRelu: po.append_eltwise(1.f, algorithm::eltwise_relu, 0.f, 0.f); break;
    case kRelu6: po.append_eltwise(1.f, algorithm::eltwise_clip, 0.f, 6.f); break;
    case kElu: po.append_eltwise(1.f, algorithm::eltwise_elu, 1.f, 0.f); break;
    case kLeaky: po.append_eltwise(1.f, algorithm::eltwise_relu, alpha, 0.f); break;
    case kSigmoid: po.append_eltwise(1.f, algorithm::eltwise_logistic, 0.f, 0.f); break;
    case kGelu: po.append_eltwise(1.f, algorithm::eltwise_gelu_erf, 0.f, 0.f); break;
    default: break;
  }
  attr.set_post_ops(po);
  return attr;
}

// Conv params, from tfjs's computeConv2DInfo (see native.ts convParams()).
struct ConvP {
  memory::dim n, ih, iw, ic, oh, ow, oc, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr;
  int act;
  explicit ConvP(const int32_t* p)
      : n(p[0]), ih(p[1]), iw(p[2]), ic(p[3]), oh(p[4]), ow(p[5]), oc(p[6]), kh(p[7]), kw(p[8]),
        sh(p[9]), sw(p[10]), dh(p[11]), dw(p[12]), pt(p[13]), pl(p[14]), pb(p[15]), pr(p[16]),
        act(p[17]) {}
  memory::dims src() const { return {n, ic, ih, iw}; }
  memory::dims wei() const { return {oc, ic, kh, kw}; }
  memory::dims dst() const { return {n, oc, oh, ow}; }
  memory::dims strides() const { return {sh, sw}; }
  memory::dims dil() const { return {dh - 1, dw - 1}; }
  // oneDNN wants the right padding that makes the output size exact; tfjs's VALID/explicit
  // padding can leave input rows unused, which the floor in oneDNN's check absorbs.
  memory::dims padl() const { return {pt, pl}; }
  memory::dims padr() const {
    memory::dim rh = (oh - 1) * sh + (kh - 1) * dh + 1 - ih - pt;
    memory::dim rw = (ow - 1) * sw + (kw - 1) * dw + 1 - iw - pl;
    return {std::max<memory::dim>(rh, 0), std::max<memory::dim>(rw, 0)};
  }
};

// In bf16 mode (dcd::g_bf16) the activations and weights are bf16 (converted on the way in),
// accumulation and output fp32.
dt In() { return dcd::g_bf16 ? dt::bf16 : dt::f32; }
// The same plain (strided) layout with bf16 elements.
memory::desc AsBf16(const memory::desc& d) {
  const auto& b = d.data.format_desc.blocking;
  return memory::desc(d.dims(), dt::bf16, memory::dims(b.strides, b.strides + d.data.ndims));
}
// The desc the primitive takes for a plain fp32 input: itself, or its bf16 twin in bf16 mode.
memory::desc InDesc(const memory::desc& f32desc) { return dcd::g_bf16 ? AsBf16(f32desc) : f32desc; }
// Packed weight buffers (conv2d's and linear's `packed`) end with one float naming the precision
// they were packed in, so that a buffer packed before setPrecision() changed is repacked (or, when
// too small for the new layout, bypassed) instead of being read in the wrong format.
float PackTag() { return dcd::g_bf16 ? 2.f : 1.f; }
// Whether `packed` (floats, tag last) can hold `bytes` of packed weights.
bool PackFits(size_t lenFloats, size_t bytes) { return lenFloats >= 1 && (lenFloats - 1) * 4 >= bytes; }

// x (a dense plain fp32 array) as the primitive's source: itself in fp32 mode, else converted
// to bf16 into scratch `slot`.
memory Src(const memory::desc& f32desc, float* x, int slot, bool bf16 = dcd::g_bf16) {
  if (!bf16) return memory(f32desc, eng(), x);
  const int64_t n = static_cast<int64_t>(f32desc.get_size() / 4);
  auto* p = static_cast<uint16_t*>(dcd::Scratch(slot, static_cast<size_t>(n) * 2));
  dcd::ToBf16(x, p, n);
  return memory(AsBf16(f32desc), eng(), p);
}

dnnl::convolution_forward::primitive_desc ConvFwdPd(const ConvP& c, bool bias, const dnnl::primitive_attr& attr,
                                                    dnnl::prop_kind prop, dt in = In()) {
  memory::desc src(c.src(), in, tag::nhwc), dst(c.dst(), dt::f32, tag::nhwc);
  memory::desc wei(c.wei(), in, tag::any);
  if (bias) {
    memory::desc b({c.oc}, dt::f32, tag::x);
    dnnl::convolution_forward::desc d(prop, algorithm::convolution_direct, src, wei, b, dst, c.strides(), c.dil(),
                                      c.padl(), c.padr());
    return {d, attr, eng()};
  }
  dnnl::convolution_forward::desc d(prop, algorithm::convolution_direct, src, wei, dst, c.strides(), c.dil(),
                                    c.padl(), c.padr());
  return {d, attr, eng()};
}

// Primitive descriptors and primitives, cached by their parameters. oneDNN caches primitives
// itself, but creating the primitive descriptor (implementation dispatch, brgemm set-up) took
// 1-2.5 ms per call here, as much as a whole small matmul.
std::string Key(const int32_t* p, int n, float alpha, int flags) {
  std::string k(reinterpret_cast<const char*>(p), n * 4);
  k.append(reinterpret_cast<const char*>(&alpha), 4);
  k.append(reinterpret_cast<const char*>(&flags), 4);
  return k;
}
template <typename E>
E& Cached(std::unordered_map<std::string, E>& m, const std::string& key, const std::function<E()>& make) {
  auto it = m.find(key);
  if (it != m.end()) return it->second;
  if (m.size() >= 512) m.clear();  // bound: shapes vary only with batch size and resolution
  return m.emplace(key, make()).first->second;
}
// A reorder from `from` to `to`, or none when the layouts already agree.
struct Reorder {
  bool needed = false;
  dnnl::reorder prim;
  Reorder() = default;
  Reorder(const memory::desc& from, const memory::desc& to) : needed(!(from == to)) {
    if (needed) prim = dnnl::reorder(dnnl::reorder::primitive_desc(eng(), from, eng(), to));
  }
};

struct ConvFwd {
  dnnl::convolution_forward::primitive_desc pd;
  dnnl::convolution_forward prim;
  Reorder wr;  // HWIO -> the primitive's weights layout
  // Winograd only: the activations' blocked layout, with reorders in and out and scratch for both
  Reorder xr, yin, yout;
  memory xs, ys;
};
std::unordered_map<std::string, ConvFwd> conv_fwd_cache;

// Winograd F(4×4, 3×3) for 3×3 stride-1 convolutions with constant weights (inference; see
// Conv2d): oneDNN's jit_wino_4x3 wants blocked activations, so it runs between two reorders, and
// still took 57 ms instead of 95 for ResNet-50's 13 such convolutions at batch 8 here. Its rounding
// differs from direct convolution's (≈1e-6 of the output scale on ResNet-50; tested against
// PyTorch). DCD_NATIVE_WINOGRAD=0 turns it off.
bool WinogradOn() {
  static const bool on = [] {
    const char* v = std::getenv("DCD_NATIVE_WINOGRAD");
    return !(v && std::string(v) == "0");
  }();
  return on;
}

ConvFwd& GetConvFwd(const int32_t* params, bool hasBias, float alpha, bool constWeights = false) {
  ConvP c(params);
  bool wino = !dcd::g_bf16 && constWeights && WinogradOn() && c.kh == 3 && c.kw == 3 && c.sh == 1 && c.sw == 1 && c.dh == 1 && c.dw == 1;
  return Cached<ConvFwd>(conv_fwd_cache, Key(params, 18, alpha, (hasBias ? 1 : 0) | (wino ? 2 : 0) | (dcd::g_bf16 ? 4 : 0)), [&] {
    if (wino) {
      try {
        memory::desc src(c.src(), dt::f32, tag::any), dst(c.dst(), dt::f32, tag::any), wei(c.wei(), dt::f32, tag::any);
        memory::desc b({c.oc}, dt::f32, tag::x);
        auto d = hasBias ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference, algorithm::convolution_winograd, src,
                                                           wei, b, dst, c.strides(), c.dil(), c.padl(), c.padr())
                         : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference, algorithm::convolution_winograd, src,
                                                           wei, dst, c.strides(), c.dil(), c.padl(), c.padr());
        dnnl::convolution_forward::primitive_desc pd(d, ActAttr(c.act, alpha), eng());
        memory::desc xn(c.src(), dt::f32, tag::nhwc), yn(c.dst(), dt::f32, tag::nhwc);
        ConvFwd e{pd, dnnl::convolution_forward(pd), Reorder({c.wei(), dt::f32, tag::hwio}, pd.weights_desc()),
                  Reorder(xn, pd.src_desc()), Reorder(yn, pd.dst_desc()), Reorder(pd.dst_desc(), yn), memory(), memory()};
        if (e.xr.needed) e.xs = memory(pd.src_desc(), eng());
        if (e.yout.needed) e.ys = memory(pd.dst_desc(), eng());
        return e;
      } catch (const dnnl::error&) {
        // no Winograd implementation for this shape or CPU: the direct convolution below
      }
    }
    auto pd = ConvFwdPd(c, hasBias, ActAttr(c.act, alpha), dnnl::prop_kind::forward_inference);
    return ConvFwd{pd, dnnl::convolution_forward(pd), Reorder({c.wei(), dt::f32, tag::hwio}, pd.weights_desc()), {}, {}, {}, memory(), memory()};
  });
}

// The residual argument info[from], checked to be a typed array at least as long as the output info[to].
const float* Residual(const Napi::CallbackInfo& info, size_t from, size_t to) {
  if (!(info.Length() > from && info[from].IsTypedArray()) || Len(info[from]) < Len(info[to]))
    throw std::runtime_error("the residual is missing or smaller than the output");
  return F32(info[from]);
}
// Copies the residual argument info[from] into the output info[to] (both threads above kGrain).
void CopyResidual(const Napi::CallbackInfo& info, size_t from, size_t to) {
  const float* src = Residual(info, from, to);
  float* dst = F32(info[to]);
  int64_t n = static_cast<int64_t>(Len(info[to])), chunk = 1 << 16;
#pragma omp parallel for if (n >= kGrain) schedule(static)
  for (int64_t i0 = 0; i0 < n; i0 += chunk) std::memcpy(dst + i0, src + i0, static_cast<size_t>(std::min(chunk, n - i0)) * 4);
}

// conv2d(x, w, bias|null, out, params Int32Array[18], alpha, packed|null, packedMode, residual|null)
// packedMode 0: reorder w for this call; 1: `packed` already holds w in the primitive's layout
// (from an earlier mode-2 call); 2: reorder w into `packed`, then run. With kSum in the params'
// activation, `residual` (the output's shape) is added before the activation.
Napi::Value Conv2d(const Napi::CallbackInfo& info) {
  ConvP c(I32(info[4]));
  bool hasBias = info[2].IsTypedArray();
  float alpha = info[5].As<Napi::Number>().FloatValue();
  int mode = info.Length() > 7 && info[6].IsTypedArray() ? info[7].As<Napi::Number>().Int32Value() : 0;
  ConvFwd& e = GetConvFwd(I32(info[4]), hasBias, alpha, mode != 0);
  memory x = Src({c.src(), dt::f32, tag::nhwc}, F32(info[0]), 3);
  memory y({c.dst(), dt::f32, tag::nhwc}, eng(), F32(info[3]));
  memory w({c.wei(), dt::f32, tag::hwio}, eng(), F32(info[1]));
  memory wp = w;
  if (e.wr.needed) {
    if (mode != 0) {
      const size_t len = Len(info[6]);
      float* tag = F32(info[6]) + (len ? len - 1 : 0);
      if (!PackFits(len, e.pd.weights_desc().get_size())) mode = 0;  // packed in another precision: bypass
      else if (mode == 1 && *tag != PackTag()) mode = 2;              // packed in another precision: repack
      if (mode == 2) *tag = PackTag();
    }
    wp = mode != 0 ? memory(e.pd.weights_desc(), eng(), F32(info[6])) : memory(e.pd.weights_desc(), eng());
    if (mode != 1) e.wr.prim.execute(strm(), {{DNNL_ARG_FROM, w}, {DNNL_ARG_TO, wp}});
  }
  memory xs = x, ys = y;
  if (e.xr.needed) {
    xs = e.xs;
    e.xr.prim.execute(strm(), {{DNNL_ARG_FROM, x}, {DNNL_ARG_TO, xs}});
  }
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, xs}, {DNNL_ARG_WEIGHTS, wp}, {DNNL_ARG_DST, ys}};
  if (c.act & kSum) {
    if (e.yout.needed) {
      memory r({c.dst(), dt::f32, tag::nhwc}, eng(), const_cast<float*>(Residual(info, 8, 3)));
      ys = e.ys;  // Winograd: the residual goes straight into the blocked output (sum post-op)
      args[DNNL_ARG_DST] = ys;
      e.yin.prim.execute(strm(), {{DNNL_ARG_FROM, r}, {DNNL_ARG_TO, ys}});
    } else {
      CopyResidual(info, 8, 3);  // (a binary-add post-op reading r was no faster in ResNet-50: brgconv_1x1 lacks it)
    }
  } else if (e.yout.needed) {
    ys = e.ys;
    args[DNNL_ARG_DST] = ys;
  }
  if (hasBias) args.insert({DNNL_ARG_BIAS, memory({{c.oc}, dt::f32, tag::x}, eng(), F32(info[2]))});
  e.prim.execute(strm(), args);
  if (e.yout.needed) e.yout.prim.execute(strm(), {{DNNL_ARG_FROM, ys}, {DNNL_ARG_TO, y}});
  strm().wait();
  return info.Env().Undefined();
}

// convPackedSize(params, alpha, hasBias): floats needed by conv2d's packed weights (0: none).
Napi::Value ConvPackedSize(const Napi::CallbackInfo& info) {
  ConvFwd& e = GetConvFwd(I32(info[0]), info[2].As<Napi::Boolean>().Value(), info[1].As<Napi::Number>().FloatValue(), true);
  // (bf16 weights: always a reorder, from the fp32 HWIO filter)
  return Napi::Number::New(info.Env(), e.wr.needed ? static_cast<double>((e.pd.weights_desc().get_size() + 3) / 4 + 1) : 0);
}

struct ConvBwdData {
  dnnl::convolution_backward_data::primitive_desc pd;
  dnnl::convolution_backward_data prim;
  Reorder wr;
};
std::unordered_map<std::string, ConvBwdData> conv_bwd_data_cache;

// conv2dBackpropInput(dy, w, dx, params)
Napi::Value Conv2dBwdData(const Napi::CallbackInfo& info) {
  ConvP c(I32(info[3]));
  ConvBwdData& e = Cached<ConvBwdData>(conv_bwd_data_cache, Key(I32(info[3]), 18, 0.f, dcd::g_bf16 ? 4 : 0), [&] {
    auto hint = ConvFwdPd(c, false, dnnl::primitive_attr(), dnnl::prop_kind::forward_training);
    memory::desc dsrc(c.src(), dt::f32, tag::nhwc), ddst(c.dst(), In(), tag::nhwc);
    memory::desc wany(c.wei(), In(), tag::any);
    dnnl::convolution_backward_data::desc d(algorithm::convolution_direct, dsrc, wany, ddst, c.strides(), c.dil(),
                                            c.padl(), c.padr());
    dnnl::convolution_backward_data::primitive_desc pd(d, eng(), hint);
    return ConvBwdData{pd, dnnl::convolution_backward_data(pd), Reorder({c.wei(), dt::f32, tag::hwio}, pd.weights_desc())};
  });
  memory dy = Src({c.dst(), dt::f32, tag::nhwc}, F32(info[0]), 4);
  memory w({c.wei(), dt::f32, tag::hwio}, eng(), F32(info[1]));
  memory dx({c.src(), dt::f32, tag::nhwc}, eng(), F32(info[2]));
  memory wp = w;
  if (e.wr.needed) {
    wp = memory(e.pd.weights_desc(), eng());
    e.wr.prim.execute(strm(), {{DNNL_ARG_FROM, w}, {DNNL_ARG_TO, wp}});
  }
  e.prim.execute(strm(), {{DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_WEIGHTS, wp}, {DNNL_ARG_DIFF_SRC, dx}});
  strm().wait();
  return info.Env().Undefined();
}

struct ConvBwdWeights {
  dnnl::convolution_backward_weights::primitive_desc pd;
  dnnl::convolution_backward_weights prim;
  Reorder wr;  // the primitive's diff-weights layout -> HWIO
};
std::unordered_map<std::string, ConvBwdWeights> conv_bwd_w_cache;

// Whether backprop-filter runs in bf16 in bf16 mode (else fp32, x and dy as they are). Without AMX,
// oneDNN 2.6 computes bf16 backward weights with jit_bf16(_1x1):avx512_core_bf16, which on this
// Zen 5 (ResNet-50, batch 8, ONEDNN_VERBOSE=1; native/README.md) beat fp32's jit(_1x1):avx512_core only
// on stride-1 convolutions with ≥ 28×28 outputs (1.5-2.8× faster: 56×56 and 28×28 1×1 and 3×3) and
// lost elsewhere, up to 40× on 7×7 outputs (512→512 3×3: 26 ms fp32, 850-1020 ms bf16) and 2-3× on
// strided ones: bf16 backward weights took 2.9-4.1 s of a step against fp32's 1.1 s. With AMX
// (brgemm kernels) bf16 throughout.
bool BwdFilterBf16(const ConvP& c) {
  if (!dcd::g_bf16) return false;
  static const bool amx = dnnl::get_effective_cpu_isa() == dnnl::cpu_isa::avx512_core_amx;
  return amx || (c.sh == 1 && c.sw == 1 && c.oh * c.ow >= 28 * 28);
}

// conv2dBackpropFilter(x, dy, dw, params)
Napi::Value Conv2dBwdFilter(const Napi::CallbackInfo& info) {
  ConvP c(I32(info[3]));
  const bool bf = BwdFilterBf16(c);
  ConvBwdWeights& e = Cached<ConvBwdWeights>(conv_bwd_w_cache, Key(I32(info[3]), 18, 0.f, bf ? 4 : 0), [&] {
    const dt in = bf ? dt::bf16 : dt::f32;
    auto hint = ConvFwdPd(c, false, dnnl::primitive_attr(), dnnl::prop_kind::forward_training, in);
    memory::desc src(c.src(), in, tag::nhwc), ddst(c.dst(), in, tag::nhwc);
    memory::desc wany(c.wei(), dt::f32, tag::any);
    dnnl::convolution_backward_weights::desc d(algorithm::convolution_direct, src, wany, ddst, c.strides(), c.dil(),
                                               c.padl(), c.padr());
    dnnl::convolution_backward_weights::primitive_desc pd(d, eng(), hint);
    return ConvBwdWeights{pd, dnnl::convolution_backward_weights(pd),
                          Reorder(pd.diff_weights_desc(), {c.wei(), dt::f32, tag::hwio})};
  });
  memory x = Src({c.src(), dt::f32, tag::nhwc}, F32(info[0]), 3, bf);
  memory dy = Src({c.dst(), dt::f32, tag::nhwc}, F32(info[1]), 4, bf);
  memory dw({c.wei(), dt::f32, tag::hwio}, eng(), F32(info[2]));
  memory dwp = e.wr.needed ? memory(e.pd.diff_weights_desc(), eng()) : dw;
  e.prim.execute(strm(), {{DNNL_ARG_SRC, x}, {DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_DIFF_WEIGHTS, dwp}});
  if (e.wr.needed) e.wr.prim.execute(strm(), {{DNNL_ARG_FROM, dwp}, {DNNL_ARG_TO, dw}});
  strm().wait();
  return info.Env().Undefined();
}

struct Mm {
  dnnl::matmul::primitive_desc pd;
  dnnl::matmul prim;
};
std::unordered_map<std::string, Mm> matmul_cache;

// matmul(a, b, bias|null, out, params [batchA, batchB, M, K, N, transA, transB, act], alpha)
// a: [batchA, M, K] (or [batchA, K, M] when transA); b: [batchB, K, N] (or [batchB, N, K]).
Napi::Value Matmul(const Napi::CallbackInfo& info) {
  const int32_t* p = I32(info[4]);
  memory::dim ba = p[0], bb = p[1], m = p[2], k = p[3], n = p[4];
  bool ta = p[5] != 0, tb = p[6] != 0;
  int act = p[7];
  memory::dim bo = std::max(ba, bb);
  memory::desc ad({ba, m, k}, dt::f32, ta ? memory::dims{m * k, 1, m} : memory::dims{m * k, k, 1});
  memory::desc bd({bb, k, n}, dt::f32, tb ? memory::dims{k * n, 1, k} : memory::dims{k * n, n, 1});
  memory::desc od({bo, m, n}, dt::f32, memory::dims{m * n, n, 1});
  bool hasBias = info[2].IsTypedArray();
  float alpha = info[5].As<Napi::Number>().FloatValue();
  memory::desc biasd({1, 1, n}, dt::f32, memory::dims{n, n, 1});
  Mm& e = Cached<Mm>(matmul_cache, Key(p, 8, alpha, (hasBias ? 1 : 0) | (dcd::g_bf16 ? 4 : 0)), [&] {
    memory::desc ai = InDesc(ad), bi = InDesc(bd);
    dnnl::matmul::desc d = hasBias ? dnnl::matmul::desc(ai, bi, biasd, od) : dnnl::matmul::desc(ai, bi, od);
    dnnl::matmul::primitive_desc pd(d, ActAttr(act, alpha), eng());
    return Mm{pd, dnnl::matmul(pd)};
  });
  memory am = Src(ad, F32(info[0]), 3), bm = Src(bd, F32(info[1]), 4), om(od, eng(), F32(info[3]));
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, om}};
  if (hasBias) args.insert({DNNL_ARG_BIAS, memory(biasd, eng(), F32(info[2]))});
  e.prim.execute(strm(), args);
  strm().wait();
  return info.Env().Undefined();
}

// A linear layer with constant weights (inference): y = act(x·Wᵀ + bias [+ y's residual]), W in
// PyTorch's [N, K] layout, kept in the primitive's own (blocked) weights layout by the caller,
// as inference runtimes pre-pack theirs: brgemm matmul otherwise re-blocks W on every call.
// act: kLinear or kGelu (exact, erf), | kSum to add a residual (see linear() below).
struct Lin {
  dnnl::matmul::primitive_desc pd;
  dnnl::matmul prim;
  Reorder wr;  // [N, K] row-major -> the primitive's weights layout
};
std::unordered_map<std::string, Lin> linear_cache;
Lin& GetLinear(const int32_t* p, bool hasBias) {
  return Cached<Lin>(linear_cache, Key(p, 4, 0.f, (hasBias ? 1 : 0) | (dcd::g_bf16 ? 4 : 0)), [&] {
    memory::dim m = p[0], k = p[1], n = p[2];
    memory::desc ad({m, k}, In(), tag::ab), wd({k, n}, In(), tag::any), od({m, n}, dt::f32, tag::ab);
    memory::desc biasd({1, n}, dt::f32, tag::ab);
    dnnl::matmul::desc d = hasBias ? dnnl::matmul::desc(ad, wd, biasd, od) : dnnl::matmul::desc(ad, wd, od);
    dnnl::matmul::primitive_desc pd(d, ActAttr(p[3], 0.f), eng());
    return Lin{pd, dnnl::matmul(pd), Reorder({{k, n}, dt::f32, tag::ba}, pd.weights_desc())};
  });
}

// linearPackedSize(params [M, K, N, act], hasBias): floats linear's `packed` buffer needs.
Napi::Value LinearPackedSize(const Napi::CallbackInfo& info) {
  Lin& e = GetLinear(I32(info[0]), info[1].As<Napi::Boolean>().Value());
  return Napi::Number::New(info.Env(), static_cast<double>((e.pd.weights_desc().get_size() + 3) / 4 + 1));
}

// linear(x [M, K], w [N, K], bias [N]|null, out [M, N], params [M, K, N, act], packed, repack,
// residual [M, N]|null): repack true: reorder w into `packed` first (the caller keeps `packed` while
// w's data lives); with kSum, `residual` is added before the activation.
Napi::Value Linear(const Napi::CallbackInfo& info) {
  const int32_t* p = I32(info[4]);
  memory::dim m = p[0], k = p[1], n = p[2];
  bool hasBias = info[2].IsTypedArray();
  Lin& e = GetLinear(p, hasBias);
  const size_t plen = Len(info[5]);
  bool repack = info[6].As<Napi::Boolean>().Value() || (plen >= 1 && F32(info[5])[plen - 1] != PackTag());
  if (Len(info[0]) < static_cast<size_t>(m * k) || Len(info[1]) < static_cast<size_t>(n * k) || Len(info[3]) < static_cast<size_t>(m * n))
    throw std::runtime_error("linear: an array is smaller than its shape");
  // a buffer packed in another precision too small for this one: pack into a temporary
  const bool fits = PackFits(plen, e.pd.weights_desc().get_size());
  memory wp = fits ? memory(e.pd.weights_desc(), eng(), F32(info[5])) : memory(e.pd.weights_desc(), eng());
  if (!fits) repack = true;
  if (repack) {
    if (fits) F32(info[5])[plen - 1] = PackTag();
    memory w({{k, n}, dt::f32, tag::ba}, eng(), F32(info[1]));
    if (e.wr.needed) e.wr.prim.execute(strm(), {{DNNL_ARG_FROM, w}, {DNNL_ARG_TO, wp}});
    else std::memcpy(wp.get_data_handle(), F32(info[1]), static_cast<size_t>(n * k) * 4);  // (fp32 only: bf16 always reorders)
  }
  if (p[3] & kSum) CopyResidual(info, 7, 3);
  memory am = Src({{m, k}, dt::f32, tag::ab}, F32(info[0]), 3), om({{m, n}, dt::f32, tag::ab}, eng(), F32(info[3]));
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, wp}, {DNNL_ARG_DST, om}};
  if (hasBias) args.insert({DNNL_ARG_BIAS, memory({{1, n}, dt::f32, tag::ab}, eng(), F32(info[2]))});
  e.prim.execute(strm(), args);
  strm().wait();
  return info.Env().Undefined();
}

// Pool params: [N, IH, IW, C, OH, OW, KH, KW, SH, SW, PT, PL, PB, PR, alg(0 max, 1 avg)]
struct PoolP {
  memory::dim n, ih, iw, c, oh, ow, kh, kw, sh, sw, pt, pl, pb, pr;
  algorithm alg;
  explicit PoolP(const int32_t* p)
      : n(p[0]), ih(p[1]), iw(p[2]), c(p[3]), oh(p[4]), ow(p[5]), kh(p[6]), kw(p[7]), sh(p[8]), sw(p[9]),
        pt(p[10]), pl(p[11]), pb(p[12]), pr(p[13]),
        alg(p[14] == 0 ? algorithm::pooling_max : algorithm::pooling_avg_exclude_padding) {}
  memory::dims padr() const {
    return {std::max<memory::dim>((oh - 1) * sh + kh - ih - pt, 0),
            std::max<memory::dim>((ow - 1) * sw + kw - iw - pl, 0)};
  }
  memory::desc src() const { return {{n, c, ih, iw}, dt::f32, tag::nhwc}; }
  memory::desc dst() const { return {{n, c, oh, ow}, dt::f32, tag::nhwc}; }
  dnnl::pooling_forward::primitive_desc fwd(dnnl::prop_kind prop) const {
    dnnl::pooling_forward::desc d(prop, alg, src(), dst(), {sh, sw}, {kh, kw}, {pt, pl}, padr());
    return {d, eng()};
  }
};

// pool(x, out, params)
Napi::Value Pool(const Napi::CallbackInfo& info) {
  PoolP p(I32(info[2]));
  auto pd = p.fwd(dnnl::prop_kind::forward_inference);
  memory x(p.src(), eng(), F32(info[0])), y(p.dst(), eng(), F32(info[1]));
  dnnl::pooling_forward(pd).execute(strm(), {{DNNL_ARG_SRC, x}, {DNNL_ARG_DST, y}});
  strm().wait();
  return info.Env().Undefined();
}

// poolBackward(x|null, dy, dx, params): max pool recomputes the forward pass for its workspace.
Napi::Value PoolBwd(const Napi::CallbackInfo& info) {
  PoolP p(I32(info[3]));
  auto fpd = p.fwd(dnnl::prop_kind::forward_training);
  dnnl::pooling_backward::desc d(p.alg, p.src(), p.dst(), {p.sh, p.sw}, {p.kh, p.kw}, {p.pt, p.pl}, p.padr());
  dnnl::pooling_backward::primitive_desc pd(d, eng(), fpd);
  memory dy(p.dst(), eng(), F32(info[1])), dx(p.src(), eng(), F32(info[2]));
  std::unordered_map<int, memory> args{{DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_DIFF_SRC, dx}};
  if (p.alg == algorithm::pooling_max) {
    memory x(p.src(), eng(), F32(info[0]));
    memory y(p.dst(), eng());
    memory ws(fpd.workspace_desc(), eng());
    dnnl::pooling_forward(fpd).execute(strm(), {{DNNL_ARG_SRC, x}, {DNNL_ARG_DST, y}, {DNNL_ARG_WORKSPACE, ws}});
    args.insert({DNNL_ARG_WORKSPACE, ws});
  }
  dnnl::pooling_backward(pd).execute(strm(), args);
  strm().wait();
  return info.Env().Undefined();
}

// ---------------------------------------------------------------------------------------------
// Element-wise, softmax, reductions, transpose, batch norm: plain loops with OpenMP.

enum BinOp { kAdd = 0, kSub, kMul, kDiv, kMax, kMin, kSqDiff, kCopyA };

template <int OP>
inline float Bin(float a, float b) {
  if constexpr (OP == kAdd) return a + b;
  if constexpr (OP == kSub) return a - b;
  if constexpr (OP == kMul) return a * b;
  if constexpr (OP == kDiv) return a / b;
  if constexpr (OP == kMax) return (a > b || std::isnan(a)) ? a : b;
  if constexpr (OP == kMin) return (a < b || std::isnan(a)) ? a : b;
  if constexpr (OP == kSqDiff) return (a - b) * (a - b);
  if constexpr (OP == kCopyA) return a;  // broadcast copy (Tile)
  return 0.f;
}

// out[o, i] = a[o*sa_o + i*sa_i] OP b[o*sb_o + i*sb_i]: each input's stride is 0 along an axis
// it is broadcast on. Shapes are folded by the caller to at most 6 dims.
template <int OP>
void BinaryKernel(const float* a, const float* b, float* out, const int64_t* shape, const int64_t* sa,
                  const int64_t* sb, int rank) {
  int64_t inner = shape[rank - 1];
  int64_t outer = 1;
  for (int d = 0; d < rank - 1; ++d) outer *= shape[d];
  int64_t ia = sa[rank - 1], ib = sb[rank - 1];
  bool par = outer * inner >= kGrain;
#pragma omp parallel for if (par) schedule(static)
  for (int64_t o = 0; o < outer; ++o) {
    int64_t rem = o, offa = 0, offb = 0;
    for (int d = rank - 2; d >= 0; --d) {
      int64_t idx = rem % shape[d];
      rem /= shape[d];
      offa += idx * sa[d];
      offb += idx * sb[d];
    }
    const float* pa = a + offa;
    const float* pb = b + offb;
    float* po = out + o * inner;
    if (ia == 1 && ib == 1) {
      for (int64_t i = 0; i < inner; ++i) po[i] = Bin<OP>(pa[i], pb[i]);
    } else if (ia == 1 && ib == 0) {
      float vb = pb[0];
      for (int64_t i = 0; i < inner; ++i) po[i] = Bin<OP>(pa[i], vb);
    } else if (ia == 0 && ib == 1) {
      float va = pa[0];
      for (int64_t i = 0; i < inner; ++i) po[i] = Bin<OP>(va, pb[i]);
    } else {
      for (int64_t i = 0; i < inner; ++i) po[i] = Bin<OP>(pa[i * ia], pb[i * ib]);
    }
  }
}

// binary(op, a, b, out, shapeAndStrides Int32Array [rank, shape..., stridesA..., stridesB...])
Napi::Value Binary(const Napi::CallbackInfo& info) {
  int op = info[0].As<Napi::Number>().Int32Value();
  const int32_t* p = I32(info[4]);
  int rank = p[0];
  int64_t shape[16], sa[16], sb[16];
  for (int d = 0; d < rank; ++d) {
    shape[d] = p[1 + d];
    sa[d] = p[1 + rank + d];
    sb[d] = p[1 + 2 * rank + d];
  }
  const float *a = F32(info[1]), *b = F32(info[2]);
  float* out = F32(info[3]);
  switch (op) {
    case kAdd: BinaryKernel<kAdd>(a, b, out, shape, sa, sb, rank); break;
    case kSub: BinaryKernel<kSub>(a, b, out, shape, sa, sb, rank); break;
    case kMul: BinaryKernel<kMul>(a, b, out, shape, sa, sb, rank); break;
    case kDiv: BinaryKernel<kDiv>(a, b, out, shape, sa, sb, rank); break;
    case kMax: BinaryKernel<kMax>(a, b, out, shape, sa, sb, rank); break;
    case kMin: BinaryKernel<kMin>(a, b, out, shape, sa, sb, rank); break;
    case kSqDiff: BinaryKernel<kSqDiff>(a, b, out, shape, sa, sb, rank); break;
    case kCopyA: BinaryKernel<kCopyA>(a, b, out, shape, sa, sb, rank); break;
    default: Napi::Error::New(info.Env(), "binary: unknown op").ThrowAsJavaScriptException();
  }
  return info.Env().Undefined();
}

// exp and erf that GCC vectorizes (std::expf / std::erff are scalar library calls: erf took
// 16 ns per element here, 40 ms of every ViT-S GELU). Cephes' expf polynomial (relative error
// ~1e-7) and Eigen's / XLA's rational erf (absolute error ~1e-7, as tfjs's cpu Erf).
inline float FastExp(float x) {
  float xc = x < -87.33654f ? -87.33654f : (x > 88.37626f ? 88.37626f : x);  // NaN passes through
  float n = std::floor(xc * 1.44269504088896341f + 0.5f);
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * (r * r) + r + 1.f;
  int32_t e = static_cast<int32_t>(n) + 127;
  uint32_t bits = static_cast<uint32_t>(e) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  y *= scale;
  y = x > 88.72283f ? INFINITY : y;
  y = x < -87.33654f ? 0.f : y;
  return x != x ? x : y;
}

inline float FastErf(float v) {
  float x = v < -4.f ? -4.f : (v > 4.f ? 4.f : v);
  float x2 = x * x;
  float p = x2 * -2.72614225801306e-10f + 2.77068142495902e-08f;
  p = x2 * p + -2.10102402082508e-06f;
  p = x2 * p + -5.69250639462346e-05f;
  p = x2 * p + -7.34990630326855e-04f;
  p = x2 * p + -2.95459980854025e-03f;
  p = x2 * p + -1.60960333262415e-02f;
  p = x * p;
  float q = x2 * -1.45660718464996e-05f + -2.13374055278905e-04f;
  q = x2 * q + -1.68282697438203e-03f;
  q = x2 * q + -7.37332916720468e-03f;
  q = x2 * q + -1.42647390514189e-02f;
  return p / q;  // NaN propagates through the comparisons above
}

enum UnOp { kURelu = 0, kURelu6, kUExp, kULog, kUSqrt, kURsqrt, kUTanh, kUSigmoid, kUErf, kUSquare, kUNeg, kUAbs, kUStep };

template <int OP>
void UnaryKernel(const float* x, float* y, int64_t n, float alpha) {
#pragma omp parallel for if (n >= kGrain) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    float v = x[i];
    if constexpr (OP == kURelu) y[i] = v < 0.f ? 0.f : v;  // NaN propagates, as in tfjs
    if constexpr (OP == kURelu6) y[i] = v < 0.f ? 0.f : (v > 6.f ? 6.f : v);
    if constexpr (OP == kUExp) y[i] = FastExp(v);
    if constexpr (OP == kULog) y[i] = std::log(v);
    if constexpr (OP == kUSqrt) y[i] = std::sqrt(v);
    if constexpr (OP == kURsqrt) y[i] = 1.f / std::sqrt(v);
    if constexpr (OP == kUTanh) y[i] = std::tanh(v);
    if constexpr (OP == kUSigmoid) y[i] = 1.f / (1.f + FastExp(-v));
    if constexpr (OP == kUErf) y[i] = FastErf(v);
    if constexpr (OP == kUSquare) y[i] = v * v;
    if constexpr (OP == kUNeg) y[i] = -v;
    if constexpr (OP == kUAbs) y[i] = std::fabs(v);
    if constexpr (OP == kUStep) y[i] = std::isnan(v) ? v : (v > 0.f ? 1.f : alpha);
  }
}

// unary(op, x, y, alpha)
Napi::Value Unary(const Napi::CallbackInfo& info) {
  int op = info[0].As<Napi::Number>().Int32Value();
  const float* x = F32(info[1]);
  float* y = F32(info[2]);
  int64_t n = Len(info[1]);
  float alpha = info[3].As<Napi::Number>().FloatValue();
  switch (op) {
#define U(K) \
  case K: UnaryKernel<K>(x, y, n, alpha); break;
    U(kURelu) U(kURelu6) U(kUExp) U(kULog) U(kUSqrt) U(kURsqrt) U(kUTanh) U(kUSigmoid) U(kUErf) U(kUSquare)
    U(kUNeg) U(kUAbs) U(kUStep)
#undef U
    default: Napi::Error::New(info.Env(), "unary: unknown op").ThrowAsJavaScriptException();
  }
  return info.Env().Undefined();
}

// softmax(x, y, rows, cols): softmax over the last axis.
Napi::Value Softmax(const Napi::CallbackInfo& info) {
  const float* x = F32(info[0]);
  float* y = F32(info[1]);
  int64_t rows = info[2].As<Napi::Number>().Int64Value(), cols = info[3].As<Napi::Number>().Int64Value();
#pragma omp parallel for if (rows * cols >= kGrain) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* px = x + r * cols;
    float* py = y + r * cols;
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int64_t c = 0; c < cols; ++c) mx = std::max(mx, px[c]);
    for (int64_t c = 0; c < cols; ++c) py[c] = FastExp(px[c] - mx);
    float s = 0.f;
#pragma omp simd reduction(+ : s)
    for (int64_t c = 0; c < cols; ++c) s += py[c];
    float inv = 1.f / s;
    for (int64_t c = 0; c < cols; ++c) py[c] *= inv;
  }
  return info.Env().Undefined();
}

// attention(qkv, out, batch, tokens, heads, scale): multi-head self-attention as in timm's ViT,
// softmax(Q·Kᵀ·scale)·V per batch item and head, read straight from the qkv projection [B·T, 3·D]
// (q | k | v, each `heads` blocks of hd = D/heads) and written into out [B·T, D] (heads side by
// side), so the model needs no transposes, slices or [B·H, T, T] tensors. One (batch, head) pair
// per task: Kᵀ (zero-padded to whole vectors) and V are copied into scratch; the scores and the
// weighted sums of V are register-blocked (kAttnRows query rows × 32 lanes: 16 independent
// accumulators, GCC vector extensions, so any target compiles it; 8 rows ran 12-15% faster than 4
// in a standalone test of ViT-S/16's shapes); the softmax is max-shifted as tfjs's, its
// normalisation applied to the output rows instead of the T scores.
typedef float V16 __attribute__((vector_size(64), aligned(4)));
static inline V16 LoadV(const float* p) { return *reinterpret_cast<const V16*>(p); }
static inline void StoreV(float* p, V16 v) { *reinterpret_cast<V16*>(p) = v; }
constexpr int kAttnRows = 8;
// acc[r] (32 lanes, two vectors) = Σ_{j < len} rows[r][j] · panel[32·j .. 32·j + 31], r < R: the
// register-blocked micro-kernel of both attention products (Q·Kᵀ over Kᵀ's panels, P·V over V's).
template <int R>
static inline void PanelMul(const float* const* rows, const float* panel, int64_t len, V16 (&acc)[R][2]) {
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = V16{};
  for (int64_t j = 0; j < len; ++j) {
    V16 p0 = LoadV(panel + j * 32), p1 = LoadV(panel + j * 32 + 16);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      float x = rows[r][j];
      acc[r][0] += x * p0;
      acc[r][1] += x * p1;
    }
  }
}
Napi::Value Attention(const Napi::CallbackInfo& info) {
  constexpr int R = kAttnRows;
  const float* qkv = F32(info[0]);
  float* out = F32(info[1]);
  int64_t B = info[2].As<Napi::Number>().Int64Value(), T = info[3].As<Napi::Number>().Int64Value();
  int64_t H = info[4].As<Napi::Number>().Int64Value();
  float scale = info[5].As<Napi::Number>().FloatValue();
  int64_t D = Len(info[1]) / std::max<int64_t>(1, B * T), hd = D / std::max<int64_t>(1, H), row = 3 * D;
  int64_t Tp = (T + 31) / 32 * 32;  // score rows padded to pairs of vectors
  bool par = B * H > 1 && B * T * T * H >= kGrain / 4;
#pragma omp parallel if (par)
  {
    // Kᵀ in panels of 32 keys ([Tp/32][hd][32]) and V in panels of 32 lanes ([hd/32][T][32]): the
    // inner loops below read both sequentially (plain strided rows made them L2-latency bound)
    int64_t hd32 = hd / 32 * 32;
    std::vector<float> kt(hd * Tp, 0.f), v(T * hd), vp(hd32 * T), P(R * Tp);
    float *pk = kt.data(), *pv = v.data(), *pvp = vp.data();
    float* Pr[R];
    for (int r = 0; r < R; ++r) Pr[r] = P.data() + r * Tp;
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < B * H; ++bh) {
      int64_t b = bh / H, h = bh % H;
      const float* base = qkv + b * T * row;
      for (int64_t t = 0; t < T; ++t) {
        const float* kr = base + t * row + D + h * hd;
        for (int64_t c = 0; c < hd; ++c) pk[(t / 32) * hd * 32 + c * 32 + t % 32] = kr[c];
        const float* vr = base + t * row + 2 * D + h * hd;
        std::memcpy(pv + t * hd, vr, hd * 4);
        for (int64_t c0 = 0; c0 < hd32; c0 += 32) std::memcpy(pvp + c0 * T + t * 32, vr + c0, 128);
      }
      for (int64_t i0 = 0; i0 < T; i0 += R) {
        int64_t nr = std::min<int64_t>(R, T - i0);
        const float* q[R];
        for (int64_t r = 0; r < R; ++r) q[r] = base + (i0 + std::min<int64_t>(r, nr - 1)) * row + h * hd;
        // scores of rows i0..i0+R-1 (a short last block repeats its last row; only nr are used)
        for (int64_t j = 0; j < Tp; j += 32) {
          V16 a[R][2];
          PanelMul<R>(q, pk + (j / 32) * hd * 32, hd, a);
#pragma GCC unroll 16
          for (int r = 0; r < R; ++r) {
            StoreV(Pr[r] + j, a[r][0] * scale);
            StoreV(Pr[r] + j + 16, a[r][1] * scale);
          }
        }
        // softmax numerators exp(s − max) in place (padding lanes → 0), and 1/Σ per row
        float inv[R];
        for (int r = 0; r < R; ++r) inv[r] = 1.f;
        for (int64_t r = 0; r < nr; ++r) {
          float* ps = Pr[r];
          for (int64_t j = T; j < Tp; ++j) ps[j] = -INFINITY;
          V16 m = LoadV(ps);
          for (int64_t j = 16; j < Tp; j += 16) {
            V16 x = LoadV(ps + j);
            m = x > m ? x : m;
          }
          float mx = m[0];
          for (int k = 1; k < 16; ++k) mx = std::max(mx, m[k]);
          for (int64_t j = 0; j < Tp; ++j) ps[j] = FastExp(ps[j] - mx);
          V16 sv = {};
          for (int64_t j = 0; j < Tp; j += 16) sv += LoadV(ps + j);
          float sum = 0.f;
          for (int k = 0; k < 16; ++k) sum += sv[k];
          inv[r] = 1.f / sum;
        }
        // out rows = (P · V)·inv, 32 lanes of the head dimension at a time, then 16, then scalar
        float* orow[R];
        for (int64_t r = 0; r < R; ++r) orow[r] = out + (b * T + i0 + std::min<int64_t>(r, nr - 1)) * D + h * hd;
        int64_t c0 = 0;
        for (; c0 + 32 <= hd; c0 += 32) {
          V16 o[R][2];
          PanelMul<R>(Pr, pvp + c0 * T, T, o);
          for (int64_t r = 0; r < nr; ++r) {
            StoreV(orow[r] + c0, o[r][0] * inv[r]);
            StoreV(orow[r] + c0 + 16, o[r][1] * inv[r]);
          }
        }
        for (; c0 + 16 <= hd; c0 += 16) {
          V16 o[R];
#pragma GCC unroll 16
          for (int r = 0; r < R; ++r) o[r] = V16{};
          for (int64_t j = 0; j < T; ++j) {
            V16 vv = LoadV(pv + j * hd + c0);
#pragma GCC unroll 16
            for (int r = 0; r < R; ++r) o[r] += Pr[r][j] * vv;
          }
          for (int64_t r = 0; r < nr; ++r) StoreV(orow[r] + c0, o[r] * inv[r]);
        }
        for (int64_t r = 0; r < nr && c0 < hd; ++r)
          for (int64_t c = c0; c < hd; ++c) {
            float acc = 0.f;
            for (int64_t j = 0; j < T; ++j) acc += Pr[r][j] * pv[j * hd + c];
            orow[r][c] = acc * inv[r];
          }
      }
    }
  }
  return info.Env().Undefined();
}

// reduce(op 0 sum / 1 mean / 2 max / 3 min, x, y, outer, mid, inner): x is [outer, mid, inner],
// reduced over `mid` into y [outer, inner].
Napi::Value Reduce(const Napi::CallbackInfo& info) {
  int op = info[0].As<Napi::Number>().Int32Value();
  const float* x = F32(info[1]);
  float* y = F32(info[2]);
  int64_t outer = info[3].As<Napi::Number>().Int64Value(), mid = info[4].As<Napi::Number>().Int64Value(),
          inner = info[5].As<Napi::Number>().Int64Value();
  bool par = outer * mid * inner >= kGrain;
  if (inner == 1) {
#pragma omp parallel for if (par) schedule(static)
    for (int64_t o = 0; o < outer; ++o) {
      const float* px = x + o * mid;
      if (op <= 1) {
        double s = 0;  // double accumulator: long rows (global pooling, means) stay accurate
        for (int64_t i = 0; i < mid; ++i) s += px[i];
        y[o] = static_cast<float>(op == 1 ? s / mid : s);
      } else {
        float m = px[0];
        for (int64_t i = 1; i < mid; ++i) m = op == 2 ? (px[i] > m || std::isnan(px[i]) ? px[i] : m)
                                                     : (px[i] < m || std::isnan(px[i]) ? px[i] : m);
        y[o] = m;
      }
    }
    return info.Env().Undefined();
  }
  // Reduce over a middle axis: accumulate rows, parallel over outer x inner blocks.
  int64_t blocks = (inner + 255) / 256;
#pragma omp parallel for if (par) schedule(static) collapse(2)
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t bi = 0; bi < blocks; ++bi) {
      int64_t i0 = bi * 256, i1 = std::min(inner, i0 + 256);
      float* py = y + o * inner;
      const float* px = x + o * mid * inner;
      if (op <= 1) {
        double acc[256];
        for (int64_t i = i0; i < i1; ++i) acc[i - i0] = 0;
        for (int64_t r = 0; r < mid; ++r)
          for (int64_t i = i0; i < i1; ++i) acc[i - i0] += px[r * inner + i];
        for (int64_t i = i0; i < i1; ++i) py[i] = static_cast<float>(op == 1 ? acc[i - i0] / mid : acc[i - i0]);
      } else {
        for (int64_t i = i0; i < i1; ++i) py[i] = px[i];
        for (int64_t r = 1; r < mid; ++r)
          for (int64_t i = i0; i < i1; ++i) {
            float v = px[r * inner + i];
            if (op == 2 ? (v > py[i] || std::isnan(v)) : (v < py[i] || std::isnan(v))) py[i] = v;
          }
      }
    }
  }
  return info.Env().Undefined();
}

// transpose(x, y, params Int32Array [rank, shape..., perm...]) for any 4-byte element type.
Napi::Value Transpose(const Napi::CallbackInfo& info) {
  auto xa = info[0].As<Napi::TypedArray>();
  auto ya = info[1].As<Napi::TypedArray>();
  const uint32_t* x = reinterpret_cast<const uint32_t*>(static_cast<uint8_t*>(xa.ArrayBuffer().Data()) + xa.ByteOffset());
  uint32_t* y = reinterpret_cast<uint32_t*>(static_cast<uint8_t*>(ya.ArrayBuffer().Data()) + ya.ByteOffset());
  const int32_t* p = I32(info[2]);
  int rank = p[0];
  int64_t shape[8], perm[8], xstride[8], oshape[8], sx[8];
  for (int d = 0; d < rank; ++d) {
    shape[d] = p[1 + d];
    perm[d] = p[1 + rank + d];
  }
  xstride[rank - 1] = 1;
  for (int d = rank - 2; d >= 0; --d) xstride[d] = xstride[d + 1] * shape[d + 1];
  for (int d = 0; d < rank; ++d) {
    oshape[d] = shape[perm[d]];
    sx[d] = xstride[perm[d]];  // stride in x of output axis d
  }
  int64_t ostride[8];
  ostride[rank - 1] = 1;
  for (int d = rank - 2; d >= 0; --d) ostride[d] = ostride[d + 1] * oshape[d + 1];
  int64_t total = ostride[0] * oshape[0];
  // Output axis `a` is the one contiguous in x. If it is the last, rows are plain copies;
  // otherwise transpose 32x32 tiles of (a, last) so that reads and writes both stay in cache.
  int a = 0;
  for (int d = 0; d < rank; ++d)
    if (perm[d] == rank - 1) a = d;
  int last = rank - 1;
  int64_t na = oshape[a], nb = oshape[last], sB = sx[last], osA = ostride[a];
  constexpr int64_t T = 32;
  int64_t ta = a == last ? 1 : (na + T - 1) / T, tb = a == last ? 1 : (nb + T - 1) / T;
  int64_t combos = total / (a == last ? nb : na * nb);
#pragma omp parallel for if (total >= kGrain) schedule(static) collapse(2)
  for (int64_t o = 0; o < combos; ++o) {
    for (int64_t t = 0; t < ta * tb; ++t) {
      int64_t rem = o, ix = 0, iy = 0;
      for (int d = rank - 1; d >= 0; --d) {
        if (d == last || d == a) continue;
        int64_t idx = rem % oshape[d];
        rem /= oshape[d];
        ix += idx * sx[d];
        iy += idx * ostride[d];
      }
      if (a == last) {
        std::memcpy(y + iy, x + ix, nb * 4);
        continue;
      }
      int64_t a0 = (t / tb) * T, b0 = (t % tb) * T;
      int64_t a1 = std::min(na, a0 + T), b1 = std::min(nb, b0 + T);
      for (int64_t i = a0; i < a1; ++i)
        for (int64_t j = b0; j < b1; ++j) y[iy + i * osA + j] = x[ix + i + j * sB];
    }
  }
  return info.Env().Undefined();
}

// y[r, j] = act(x[r, j]·a[j] + b[j] (+ res[r, j])) over rows of length c (a per-channel affine map,
// then optionally a residual and ReLU): BatchNorm's normalisation, and a ResNet block's end.
template <bool Res, bool Relu>
void ScaleShiftRowsT(const float* x, float* y, int64_t rows, int64_t c, const float* a, const float* b, const float* res) {
#pragma omp parallel for if (rows * c >= kGrain) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* px = x + r * c;
    const float* pr = Res ? res + r * c : nullptr;
    float* py = y + r * c;
    for (int64_t j = 0; j < c; ++j) {
      float v = px[j] * a[j] + b[j];
      if (Res) v += pr[j];
      py[j] = Relu ? (v > 0.f ? v : (v != v ? v : 0.f)) : v;
    }
  }
}
void ScaleShiftRows(const float* x, float* y, int64_t rows, int64_t c, const float* a, const float* b, const float* res = nullptr, bool relu = false) {
  if (res) (relu ? ScaleShiftRowsT<true, true> : ScaleShiftRowsT<true, false>)(x, y, rows, c, a, b, res);
  else (relu ? ScaleShiftRowsT<false, true> : ScaleShiftRowsT<false, false>)(x, y, rows, c, a, b, res);
}

// batchNorm(x, mean, variance, offset|null, scale|null, y, eps): as tfjs's cpu FusedBatchNorm,
// each parameter array is indexed cyclically (i % length) over the flattened x.
Napi::Value BatchNorm(const Napi::CallbackInfo& info) {
  const float* x = F32(info[0]);
  const float *mean = F32(info[1]), *var = F32(info[2]);
  int64_t n = Len(info[0]), lm = Len(info[1]), lv = Len(info[2]);
  const float* off = info[3].IsTypedArray() ? F32(info[3]) : nullptr;
  const float* sc = info[4].IsTypedArray() ? F32(info[4]) : nullptr;
  int64_t lo = off ? Len(info[3]) : 1, ls = sc ? Len(info[4]) : 1;
  float* y = F32(info[5]);
  float eps = info[6].As<Napi::Number>().FloatValue();
  // Fast path: every parameter has length C (or 1) and x is [rows, C]: fold into y = x * a + b.
  int64_t c = std::max({lm, lv, lo, ls});
  bool rowwise = n % c == 0;
  for (int64_t l : {lm, lv, lo, ls}) rowwise = rowwise && (l == c || l == 1);
  if (rowwise) {
    std::vector<float> a(c), b(c);
    for (int64_t j = 0; j < c; ++j) {
      float s = (sc ? sc[j % ls] : 1.f) / std::sqrt(var[j % lv] + eps);
      a[j] = s;
      b[j] = (off ? off[j % lo] : 0.f) - mean[j % lm] * s;
    }
    ScaleShiftRows(x, y, n / c, c, a.data(), b.data());
    return info.Env().Undefined();
  }
#pragma omp parallel for if (n >= kGrain) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    float o = off ? off[i % lo] : 0.f, s = sc ? sc[i % ls] : 1.f;
    y[i] = o + (x[i] - mean[i % lm]) * s / std::sqrt(var[i % lv] + eps);
  }
  return info.Env().Undefined();
}

// copyRows(src, dst, rows, cols, srcStride, dstStride): dst[r*dstStride + c] = src[r*srcStride + c]
// for c < cols; `src` and `dst` may be subarrays. Concat writes each input this way.
Napi::Value CopyRows(const Napi::CallbackInfo& info) {
  const float* src = F32(info[0]);
  float* dst = F32(info[1]);
  int64_t rows = info[2].As<Napi::Number>().Int64Value(), cols = info[3].As<Napi::Number>().Int64Value();
  int64_t ss = info[4].As<Napi::Number>().Int64Value(), ds = info[5].As<Napi::Number>().Int64Value();
#pragma omp parallel for if (rows * cols >= kGrain) schedule(static)
  for (int64_t r = 0; r < rows; ++r) std::memcpy(dst + r * ds, src + r * ss, cols * 4);
  return info.Env().Undefined();
}

// The shape (n, h, w, c) in info[2..5] of im2col3x3 / col2im3x3, checked against the image array
// info[image] ([n, h, w, c]) and the patch rows info[patches] ([n·h·w, 9·c]).
std::array<int64_t, 4> PatchShape(const Napi::CallbackInfo& info, int image, int patches, const char* name) {
  std::array<int64_t, 4> s;
  for (int i = 0; i < 4; ++i) s[i] = info[2 + i].As<Napi::Number>().Int64Value();
  int64_t px = s[0] * s[1] * s[2] * s[3];
  if (static_cast<int64_t>(Len(info[image])) < px || static_cast<int64_t>(Len(info[patches])) < 9 * px)
    throw std::runtime_error(std::string(name) + ": buffer smaller than its shape");
  return s;
}

// Runs f(y, x, p) for every pixel p = (b·h + y)·w + x of an [n, h, w] grid (a neighbour at (y', x')
// of the same image is p + (y' − y)·w + (x' − x)), in parallel over images when the patch rows,
// 9·c floats a pixel, reach kGrain.
template <typename F>
void EachPixel(int64_t n, int64_t h, int64_t w, int64_t c, F f) {
#pragma omp parallel for if (n * h * w * 9 * c >= kGrain) schedule(static)
  for (int64_t b = 0; b < n; ++b)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) f(y, x, (b * h + y) * w + x);
}

// im2col3x3(x, out, n, h, w, c): the 3×3 "same" patches of NHWC x [n, h, w, c] (zero padding 1),
// out [n·h·w, 9·c], column block k = dy·3 + dx holding x[b, y + dy − 1, x + dx − 1, :] (+0 outside):
// exactly what pad + nine slices + concat compute (src/models/small-cnn.ts), in one pass.
Napi::Value Im2col3x3(const Napi::CallbackInfo& info) {
  const float* x = F32(info[0]);
  float* out = F32(info[1]);
  const auto [n, h, w, c] = PatchShape(info, 0, 1, "im2col3x3");
  EachPixel(n, h, w, c, [&, h = h, w = w, c = c](int64_t y, int64_t xx, int64_t p) {
    float* o = out + p * 9 * c;
    for (int64_t k = 0; k < 9; ++k, o += c) {
      int64_t dy = k / 3 - 1, dx = k % 3 - 1;
      if (y + dy < 0 || y + dy >= h || xx + dx < 0 || xx + dx >= w) {
        for (int64_t j = 0; j < c; ++j) o[j] = 0.f;
      } else {
        const float* s = x + (p + dy * w + dx) * c;
        for (int64_t j = 0; j < c; ++j) o[j] = s[j];
      }
    }
  });
  return info.Env().Undefined();
}

// col2im3x3(dcol, dx, n, h, w, c): the gradient of im2col3x3, dx [n, h, w, c] from dcol [n·h·w, 9·c]:
// each input pixel sums what its nine windows received, in the order tfjs's autodiff of the
// composed form adds them (slice 8's padded gradient first, then + slice 7's, ... + slice 0's, a
// window that misses the pixel adding +0), so the result is bit-identical to the composed form.
Napi::Value Col2im3x3(const Napi::CallbackInfo& info) {
  const float* d = F32(info[0]);
  float* dx = F32(info[1]);
  const auto [n, h, w, c] = PatchShape(info, 1, 0, "col2im3x3");
  EachPixel(n, h, w, c, [&, h = h, w = w, c = c](int64_t y, int64_t xx, int64_t p) {
    float* o = dx + p * c;
    for (int64_t k = 8; k >= 0; --k) {
      // window k = (dy, dx) reaches this pixel from the patch of the pixel (y − dy + 1, x − dx + 1)
      int64_t oy = 1 - k / 3, ox = 1 - k % 3;
      bool in = y + oy >= 0 && y + oy < h && xx + ox >= 0 && xx + ox < w;
      const float* s = in ? d + (p + oy * w + ox) * 9 * c + k * c : nullptr;
      if (k == 8) {
        if (in) for (int64_t j = 0; j < c; ++j) o[j] = s[j];
        else for (int64_t j = 0; j < c; ++j) o[j] = 0.f;
      } else if (in) {
        for (int64_t j = 0; j < c; ++j) o[j] = o[j] + s[j];
      } else {
        for (int64_t j = 0; j < c; ++j) o[j] = o[j] + 0.f;  // -0 + +0 = +0, as the padded add
      }
    }
  });
  return info.Env().Undefined();
}

// Per-channel sums over rows of x [rows, C] (and of a second array): per thread, float partials over
// blocks of 64 rows folded into double, then added across threads. `f(r, j)` returns the two
// values row r, channel j contributes; `out1`/`out2` get the totals.
template <typename F>
void ChannelSums(int64_t rows, int64_t c, bool par, F f, std::vector<double>& out1, std::vector<double>& out2) {
  int nt = par ? omp_get_max_threads() : 1;
  std::vector<double> s1(static_cast<size_t>(nt) * c, 0.0), s2(static_cast<size_t>(nt) * c, 0.0);
#pragma omp parallel num_threads(nt) if (par)
  {
    int t = omp_get_thread_num();
    double* a = s1.data() + static_cast<size_t>(t) * c;
    double* b = s2.data() + static_cast<size_t>(t) * c;
    std::vector<float> fa(c), fb(c);
#pragma omp for schedule(static)
    for (int64_t r0 = 0; r0 < rows; r0 += 64) {
      int64_t r1 = std::min(rows, r0 + 64);
      std::fill(fa.begin(), fa.end(), 0.f);
      std::fill(fb.begin(), fb.end(), 0.f);
      for (int64_t r = r0; r < r1; ++r)
#pragma omp simd
        for (int64_t j = 0; j < c; ++j) {
          auto v = f(r, j);
          fa[j] += v.first;
          fb[j] += v.second;
        }
      for (int64_t j = 0; j < c; ++j) {
        a[j] += fa[j];
        b[j] += fb[j];
      }
    }
  }
  out1.assign(c, 0.0);
  out2.assign(c, 0.0);
  for (int t = 0; t < nt; ++t)
    for (int64_t j = 0; j < c; ++j) {
      out1[j] += s1[static_cast<size_t>(t) * c + j];
      out2[j] += s2[static_cast<size_t>(t) * c + j];
    }
}

// batchNormGrad(x, dy, mean, variance, scale|null, dx, dmean, dvar, dscale, doffset, eps): the
// gradients of tfjs's FusedBatchNorm (y = (x - mean) * rsqrt(var + eps) * scale + offset, mean and
// variance as independent inputs) for x [rows, C] and per-channel parameters [C], in one pass
// over x and dy for the channel sums and one for dx (tfjs's composite gradient makes ~12 passes).
Napi::Value BatchNormGrad(const Napi::CallbackInfo& info) {
  const float *x = F32(info[0]), *dy = F32(info[1]), *mean = F32(info[2]), *var = F32(info[3]);
  const float* sc = info[4].IsTypedArray() ? F32(info[4]) : nullptr;
  float *dx = F32(info[5]), *dmean = F32(info[6]), *dvar = F32(info[7]), *dscale = F32(info[8]), *doff = F32(info[9]);
  float eps = info[10].As<Napi::Number>().FloatValue();
  int64_t c = Len(info[2]), n = Len(info[0]), rows = c > 0 ? n / c : 0;
  std::vector<float> rs(c), k(c);
  for (int64_t j = 0; j < c; ++j) {
    rs[j] = 1.f / std::sqrt(var[j] + eps);
    k[j] = rs[j] * (sc ? sc[j] : 1.f);
  }
  const float* pk = k.data();
  // one pass: the channel sums, and dx's independent-statistics part as it goes
  std::vector<double> sdy, sdx;
  ChannelSums(rows, c, n >= kGrain, [x, dy, dx, c, mean, pk](int64_t r, int64_t j) {
    float g = dy[r * c + j];
    dx[r * c + j] = g * pk[j];
    return std::make_pair(g, g * (x[r * c + j] - mean[j]));
  }, sdy, sdx);
  for (int64_t j = 0; j < c; ++j) {
    double sa = sdy[j], sb = sdx[j];
    float s = sc ? sc[j] : 1.f;
    doff[j] = static_cast<float>(sa);
    dscale[j] = static_cast<float>(sb * rs[j]);
    dmean[j] = static_cast<float>(-sa * rs[j] * s);
    dvar[j] = static_cast<float>(-0.5 * sb * rs[j] * rs[j] * rs[j] * s);
  }
  return info.Env().Undefined();
}

// batchNormTrain(x, scale|null, offset|null, y, mean, var, eps, residual|null, relu): training-mode
// BatchNorm of x [rows, C] with the batch statistics (biased variance, as PyTorch normalises with),
// returned in `mean` and `var`, then optionally + residual [rows, C] and ReLU. Two passes: shifted
// sums (by the first row, so a large mean does not cancel the variance away), then y. The composed
// form (tf.moments + batchNorm, add, relu) is ~6 to 8 passes.
Napi::Value BatchNormTrain(const Napi::CallbackInfo& info) {
  const float* x = F32(info[0]);
  const float* sc = info[1].IsTypedArray() ? F32(info[1]) : nullptr;
  const float* off = info[2].IsTypedArray() ? F32(info[2]) : nullptr;
  float *y = F32(info[3]), *mean = F32(info[4]), *var = F32(info[5]);
  float eps = info[6].As<Napi::Number>().FloatValue();
  const float* res = info.Length() > 7 && info[7].IsTypedArray() ? F32(info[7]) : nullptr;
  bool relu = info.Length() > 8 && info[8].ToBoolean().Value();
  int64_t c = Len(info[4]), n = Len(info[0]), rows = c > 0 ? n / c : 0;
  if (rows == 0) return info.Env().Undefined();
  std::vector<float> shift(x, x + c);
  const float* k0 = shift.data();
  std::vector<double> s1, s2;
  ChannelSums(rows, c, n >= kGrain, [x, c, k0](int64_t r, int64_t j) {
    float d = x[r * c + j] - k0[j];
    return std::make_pair(d, d * d);
  }, s1, s2);
  std::vector<float> a(c), b(c);
  for (int64_t j = 0; j < c; ++j) {
    double m = s1[j] / rows;
    double v = std::max(0.0, s2[j] / rows - m * m);
    mean[j] = static_cast<float>(k0[j] + m);
    var[j] = static_cast<float>(v);
    float rs = 1.f / std::sqrt(var[j] + eps);
    a[j] = rs * (sc ? sc[j] : 1.f);
    b[j] = (off ? off[j] : 0.f) - mean[j] * a[j];
  }
  ScaleShiftRows(x, y, rows, c, a.data(), b.data(), res, relu);
  return info.Env().Undefined();
}

// batchNormTrainGrad(x, dy, mean, var, scale|null, dx, dscale, doffset, eps, y|null, dres|null):
// the gradients of batchNormTrain's y with respect to x (through the batch statistics too), scale
// and offset: dx = γ·rstd·(g − Σg/N − (x−μ)·rstd²·Σg(x−μ)/N), where g = dy, or, when the forward
// applied ReLU (`y` given: its output), g = dy·[y > 0]. With `dres` (the forward added a residual)
// g is also written there: the residual's gradient. Two passes.
Napi::Value BatchNormTrainGrad(const Napi::CallbackInfo& info) {
  const float *x = F32(info[0]), *dy = F32(info[1]), *mean = F32(info[2]), *var = F32(info[3]);
  const float* sc = info[4].IsTypedArray() ? F32(info[4]) : nullptr;
  float *dx = F32(info[5]), *dscale = F32(info[6]), *doff = F32(info[7]);
  float eps = info[8].As<Napi::Number>().FloatValue();
  const float* y = info.Length() > 9 && info[9].IsTypedArray() ? F32(info[9]) : nullptr;
  float* dres = info.Length() > 10 && info[10].IsTypedArray() ? F32(info[10]) : nullptr;
  int64_t c = Len(info[2]), n = Len(info[0]), rows = c > 0 ? n / c : 0;
  if (rows == 0) return info.Env().Undefined();
  std::vector<double> sa, sb;
  auto sums = [&](auto g) {
    ChannelSums(rows, c, n >= kGrain, [x, c, mean, g](int64_t r, int64_t j) {
      float v = g(r * c + j);
      return std::make_pair(v, v * (x[r * c + j] - mean[j]));
    }, sa, sb);
  };
  // ReLU's gradient as tfjs's: dy where y > 0, NaN where y is NaN, else 0
  auto masked = [dy, y](int64_t i) {
    float d = dy[i], v = y[i];
    float g = d * (v > 0.f ? 1.f : 0.f);
    return v != v ? v : g;
  };
  if (y && dres) {
    // ReLU's masked dy is also the residual's gradient: write it once, then the plain BN gradient of it
    // (faster here than keeping the mask inside both passes and storing dres on the way)
#pragma omp parallel for simd if (n >= kGrain) schedule(static)
    for (int64_t i = 0; i < n; ++i) dres[i] = masked(i);
    dy = dres;
    y = nullptr;
  }
  if (y) sums(masked);
  else sums([dy](int64_t i) { return dy[i]; });
  std::vector<float> k(c), ca(c), cb(c);
  for (int64_t j = 0; j < c; ++j) {
    float rs = 1.f / std::sqrt(var[j] + eps);
    k[j] = rs * (sc ? sc[j] : 1.f);
    ca[j] = static_cast<float>(sa[j] / rows);
    cb[j] = static_cast<float>(sb[j] / rows) * rs * rs;
    doff[j] = static_cast<float>(sa[j]);
    dscale[j] = static_cast<float>(sb[j] * rs);
  }
  const float *pk = k.data(), *pa = ca.data(), *pb = cb.data();
  auto finish = [&](auto g) {
#pragma omp parallel for if (n >= kGrain) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const float* px = x + r * c;
      float* po = dx + r * c;
      for (int64_t j = 0; j < c; ++j) po[j] = pk[j] * (g(r * c + j) - pa[j] - (px[j] - mean[j]) * pb[j]);
    }
  };
  if (y) finish(masked);
  else finish([dy](int64_t i) { return dy[i]; });
  return info.Env().Undefined();
}

// sgdStep(p, g, buf|null, pOut, bufOut, lr, momentum, weightDecay, nesterov): one torch.optim.SGD
// update (dampening 0) in one pass: d = g + wd·p; buf' = μ·buf + d (buf absent: zeros);
// d = nesterov ? d + μ·buf' : buf'; p' = p − lr·d. (The composed form is 4–7 passes.)
Napi::Value SgdStep(const Napi::CallbackInfo& info) {
  const float *p = F32(info[0]), *g = F32(info[1]);
  const float* buf = info[2].IsTypedArray() ? F32(info[2]) : nullptr;
  float *po = F32(info[3]), *bo = F32(info[4]);
  float lr = info[5].As<Napi::Number>().FloatValue(), mu = info[6].As<Napi::Number>().FloatValue();
  float wd = info[7].As<Napi::Number>().FloatValue();
  bool nesterov = info[8].ToBoolean().Value();
  int64_t n = Len(info[0]);
#pragma omp parallel for simd if (n >= kGrain) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    float d = wd != 0.f ? g[i] + wd * p[i] : g[i];
    float b = (buf ? mu * buf[i] : 0.f) + d;
    bo[i] = b;
    po[i] = p[i] - lr * (nesterov ? d + mu * b : b);
  }
  return info.Env().Undefined();
}

// reluGrad(dy, x, dx): dx = dy·step(x), ReLU's gradient in one pass (tfjs: Step, then Multiply);
// NaN in x stays NaN, as there.
Napi::Value ReluGrad(const Napi::CallbackInfo& info) {
  const float *dy = F32(info[0]), *x = F32(info[1]);
  float* dx = F32(info[2]);
  int64_t n = Len(info[0]);
#pragma omp parallel for simd if (n >= kGrain) schedule(static)
  for (int64_t i = 0; i < n; ++i) dx[i] = x[i] > 0.f ? dy[i] : (x[i] != x[i] ? x[i] : 0.f * dy[i]);
  return info.Env().Undefined();
}

// layerNorm(x, w, b, y, cols, eps): y = (x - mean) / sqrt(var + eps) * w + b over the last axis of
// length `cols` (biased variance, two passes over each row, as PyTorch's LayerNorm): one kernel
// for the ~9 element-wise passes of the composed form.
Napi::Value LayerNorm(const Napi::CallbackInfo& info) {
  const float *x = F32(info[0]), *w = F32(info[1]), *b = F32(info[2]);
  float* y = F32(info[3]);
  int64_t cols = info[4].As<Napi::Number>().Int64Value();
  float eps = info[5].As<Napi::Number>().FloatValue();
  int64_t n = Len(info[0]), rows = cols > 0 ? n / cols : 0;
#pragma omp parallel for if (n >= kGrain) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* px = x + r * cols;
    float* py = y + r * cols;
    float s = 0.f;
    for (int64_t j = 0; j < cols; ++j) s += px[j];
    const float mean = s / static_cast<float>(cols);
    float q = 0.f;
    for (int64_t j = 0; j < cols; ++j) {
      float d = px[j] - mean;
      q += d * d;
    }
    const float rs = 1.f / std::sqrt(q / static_cast<float>(cols) + eps);
    for (int64_t j = 0; j < cols; ++j) py[j] = (px[j] - mean) * rs * w[j] + b[j];
  }
  return info.Env().Undefined();
}

// gelu(x, y): exact GELU 0.5·x·(1 + erf(x/√2)) in one pass (the composed form is five).
Napi::Value Gelu(const Napi::CallbackInfo& info) {
  const float* x = F32(info[0]);
  float* y = F32(info[1]);
  int64_t n = Len(info[0]);
#pragma omp parallel for simd if (n >= kGrain) schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] = 0.5f * x[i] * (1.f + FastErf(x[i] * 0.70710678118654752f));
  return info.Env().Undefined();
}

// topk(x, values, indices, rows, cols, k): largest k per row, sorted descending; ties keep the
// lower index first (as tfjs's cpu TopK).
Napi::Value TopK(const Napi::CallbackInfo& info) {
  const float* x = F32(info[0]);
  float* vals = F32(info[1]);
  int32_t* idx = I32(info[2]);
  int64_t rows = info[3].As<Napi::Number>().Int64Value(), cols = info[4].As<Napi::Number>().Int64Value(),
          k = info[5].As<Napi::Number>().Int64Value();
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t r = 0; r < rows; ++r) {
    const float* px = x + r * cols;
    std::vector<int32_t> ids(cols);
    for (int64_t c = 0; c < cols; ++c) ids[c] = static_cast<int32_t>(c);
    auto better = [px](int32_t a, int32_t b) { return px[a] > px[b] || (px[a] == px[b] && a < b); };
    if (k < cols) std::nth_element(ids.begin(), ids.begin() + k, ids.end(), better);
    std::sort(ids.begin(), ids.begin() + k, better);
    for (int64_t j = 0; j < k; ++j) {
      idx[r * k + j] = ids[j];
      vals[r * k + j] = px[ids[j]];
    }
  }
  return info.Env().Undefined();
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  omp_set_num_threads(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}
Napi::Value GetNumThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), omp_get_max_threads());
}
Napi::Value Version(const Napi::CallbackInfo& info) {
  const dnnl_version_t* v = dnnl_version();
  return Napi::String::New(info.Env(), "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
                                           std::to_string(v->patch) + " (OpenMP, " + std::to_string(omp_get_max_threads()) + " threads)");
}

}  // namespace

using dcd::Guard;

Napi::Object Init(Napi::Env env, Napi::Object exports) {
#define EXPORT(name, fn) exports.Set(name, Napi::Function::New(env, Guard<fn>, name))
  EXPORT("conv2d", Conv2d);
  EXPORT("convPackedSize", ConvPackedSize);
  EXPORT("conv2dBackpropInput", Conv2dBwdData);
  EXPORT("conv2dBackpropFilter", Conv2dBwdFilter);
  EXPORT("matmul", Matmul);
  EXPORT("linear", Linear);
  EXPORT("linearPackedSize", LinearPackedSize);
  EXPORT("pool", Pool);
  EXPORT("poolBackward", PoolBwd);
  EXPORT("binary", Binary);
  EXPORT("unary", Unary);
  EXPORT("softmax", Softmax);
  EXPORT("reduce", Reduce);
  EXPORT("transpose", Transpose);
  EXPORT("batchNorm", BatchNorm);
  EXPORT("topk", TopK);
  EXPORT("copyRows", CopyRows);
  EXPORT("im2col3x3", Im2col3x3);
  EXPORT("col2im3x3", Col2im3x3);
  EXPORT("batchNormGrad", BatchNormGrad);
  EXPORT("layerNorm", LayerNorm);
  EXPORT("batchNormTrain", BatchNormTrain);
  EXPORT("batchNormTrainGrad", BatchNormTrainGrad);
  EXPORT("gelu", Gelu);
  EXPORT("reluGrad", ReluGrad);
  EXPORT("sgdStep", SgdStep);
  EXPORT("attention", Attention);
  EXPORT("setNumThreads", SetNumThreads);
  EXPORT("getNumThreads", GetNumThreads);
  EXPORT("version", Version);
#undef EXPORT
  dcd::RegisterBf16(env, exports);
  dcd::RegisterSelect(env, exports);
  return exports;
}

NODE_API_MODULE(dcd_native, Init)
