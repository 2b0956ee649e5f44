// Wraps an addon entry point so that oneDNN and C++ errors surface as JavaScript exceptions.
#pragma once
#include <napi.h>

#include <exception>
#include <string>

#include "oneapi/dnnl/dnnl.hpp"

namespace dcd {

template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Value Guard(const Napi::CallbackInfo& info) {
  try {
    return F(info);
  } catch (const dnnl::error& e) {
    Napi::Error::New(info.Env(), std::string("oneDNN: ") + e.what()).ThrowAsJavaScriptException();
  } catch (const std::exception& e) {
    Napi::Error::New(info.Env(), e.what()).ThrowAsJavaScriptException();
  }
  return info.Env().Undefined();
}

}  // namespace dcd
