{
  "targets": [
    {
      "target_name": "dcd_native",
      "sources": ["src/addon.cc", "src/bf16.cc", "src/select.cc"],
      "include_dirs": ["<!@(node -p \"require('node-addon-api').include\")", "/usr/include"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-O3", "-march=native", "-fopenmp", "-fexceptions", "-fno-trapping-math", "-fno-math-errno"],
      "ldflags": ["-fopenmp"],
      "libraries": ["-ldnnl", "-fopenmp"]
    }
  ]
}
