// dropkit's CPU operators: the Philox4x32-10 stream of dropkit.rng applied inside torch's own
// intra-op thread pool (at::parallel_for), bit for bit equal to dropkit.kernels.reference.
//
// Kernels of torch's dispatcher. The schemas are declared once, in Python
// (dropkit/kernels/__init__.py), before this library is loaded; this file registers the CPU
// kernel and the Autograd kernel of each with TORCH_LIBRARY_IMPL (a second registration of the
// same kernel only warns, it never aborts a process). The Autograd kernels keep the seed and the
// scalars, no tensor: backward calls the op again through the dispatcher, so double backward
// works and CUDA tensors reach their own (Python-registered) kernel.
//
// Compiled with -ffp-contract=off (no fused multiply-add) and without -ffast-math, so every
// product and sum is one IEEE operation rounded to nearest even, as torch's own CPU ops are.
// Compiled with -fopenmp so that at::parallel_for's inline OpenMP region is real, but linked
// without it: the OpenMP runtime is the one libtorch_cpu already loaded (one thread team).

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/where.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>
#include <torch/csrc/autograd/VariableTypeUtils.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/library.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "philox.h"

#include <algorithm>
#include <memory>
#include <type_traits>
#include <vector>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
#include <cstdint>

namespace {

// Counters per block: the words of one block (4 per counter) are generated into a stack buffer
// and applied at once; 32 was the fastest of 16 to 2048 (docs/design/backends.md).
constexpr int64_t kBlockGroups = 32;
constexpr int64_t kBlockWords = 4 * kBlockGroups;
// Elements per parallel task: below this a task is not worth a thread.
constexpr int64_t kGrain = 1 << 15;

// Calls body(start, len, words) for consecutive pieces of elements [begin, end): element
// start + t reads stream word words[t] (stream index start + t + offset).
template <typename Body>
inline void for_each_block(int64_t begin, int64_t end, uint64_t offset, uint32_t k0, uint32_t k1,
                           const Body& body) {
  const RoundKeys keys(k0, k1);
  alignas(64) uint32_t buffer[kBlockWords + 4];
  for (int64_t start = begin; start < end;) {
    const uint64_t j = static_cast<uint64_t>(start) + offset;
    const int64_t shift = static_cast<int64_t>(j & 3u);
    const int64_t len = std::min(end - start, kBlockWords - shift);
    const int64_t groups = (shift + len + 3) / 4;
    philox_block(j >> 2, groups, keys, buffer);
    body(start, len, buffer + shift);
    start += len;
  }
}

// f(begin, end) over [0, n): split by at::parallel_for over torch's intra-op threads, or on the
// calling thread alone when `serial` (in a forked child, where GNU OpenMP cannot start a team).
template <typename F>
inline void for_range(int64_t n, int64_t grain, bool serial, const F& f) {
  if (serial) {
    if (n > 0) {
      f(int64_t(0), n);
    }
  } else {
    at::parallel_for(0, n, grain, f);
  }
}

template <typename T>
struct Acc {
  using type = float;
};
template <>
struct Acc<double> {
  using type = double;
};

// float16 in blocks. c10::Half's conversions are scalar bit manipulations that GCC 12 does not
// vectorise (the keep kernel ran about 5x slower on float16 than on float32, see
// docs/design/backends.md). With F16C the run functions below convert blocks of
// kHalfBlock elements to float with vcvtph2ps, run their float32 instantiation (the same
// arithmetic: float16's accumulation type is float) and round back with vcvtps2ph, which rounds
// to nearest even like c10's conversion (NaN payloads aside), 16 (AVX-512) or 8 at a time.
#if defined(__F16C__)
template <typename T>
constexpr bool kHalfInBlocks = std::is_same<T, c10::Half>::value;
#else
template <typename T>
constexpr bool kHalfInBlocks = false;
#endif
constexpr int64_t kHalfBlock = 256;

#if defined(__F16C__)
inline void widen_half(const c10::Half* src, float* dst, int64_t len) {
  int64_t t = 0;
#if defined(__AVX512F__)
  for (; t + 16 <= len; t += 16) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + t));
    _mm512_storeu_ps(dst + t, _mm512_cvtph_ps(h));
  }
#endif
  for (; t + 8 <= len; t += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + t));
    _mm256_storeu_ps(dst + t, _mm256_cvtph_ps(h));
  }
  for (; t < len; ++t) {
    dst[t] = static_cast<float>(src[t]);
  }
}

inline void narrow_half(const float* src, c10::Half* dst, int64_t len) {
  constexpr int kNearest = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  int64_t t = 0;
#if defined(__AVX512F__)
  for (; t + 16 <= len; t += 16) {
    const __m256i h = _mm512_cvtps_ph(_mm512_loadu_ps(src + t), kNearest);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + t), h);
  }
#endif
  for (; t + 8 <= len; t += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + t), kNearest);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + t), h);
  }
  for (; t < len; ++t) {
    dst[t] = static_cast<c10::Half>(src[t]);
  }
}

// body(xs, os, first, count) computes os[0, count) from xs[0, count) (float), for elements
// [first, first + count) of the run; x may be out (each block is read before it is written).
template <typename Body>
inline void half_blocks(const c10::Half* x, c10::Half* out, int64_t len, const Body& body) {
  alignas(64) float xs[kHalfBlock];
  alignas(64) float os[kHalfBlock];
  for (int64_t first = 0; first < len; first += kHalfBlock) {
    const int64_t count = std::min(kHalfBlock, len - first);
    widen_half(x + first, xs, count);
    body(xs, os, first, count);
    narrow_half(os, out + first, count);
  }
}
#else
template <typename T, typename Body>
inline void half_blocks(const T*, T*, int64_t, const Body&) {}  // never called without F16C
#endif

// out[t] = x[t] * (w[t] >= t32 ? keep : 0), product in the accumulation type A, rounded once.
// Distinct arrays (restrict, so the loop vectorises without an overlap check) ...
template <typename T, typename A>
inline void keep_mask_run(const T* __restrict x, T* __restrict out,
                          const uint32_t* __restrict w, int64_t len, uint32_t t32, A keep) {
  if constexpr (kHalfInBlocks<T>) {
    half_blocks(x, out, len, [&](const float* xs, float* os, int64_t first, int64_t count) {
      keep_mask_run<float, float>(xs, os, w + first, count, t32, keep);
    });
    return;
  }
  for (int64_t t = 0; t < len; ++t) {
    const A m = w[t] >= t32 ? keep : A(0);
    out[t] = static_cast<T>(static_cast<A>(x[t]) * m);
  }
}

// ... and in place: one pointer, each element read before it is written.
template <typename T, typename A>
inline void keep_mask_run_inplace(T* __restrict x, const uint32_t* __restrict w, int64_t len,
                                  uint32_t t32, A keep) {
  if constexpr (kHalfInBlocks<T>) {
    half_blocks(x, x, len, [&](const float* xs, float* os, int64_t first, int64_t count) {
      keep_mask_run<float, float>(xs, os, w + first, count, t32, keep);
    });
    return;
  }
  for (int64_t t = 0; t < len; ++t) {
    const A m = w[t] >= t32 ? keep : A(0);
    x[t] = static_cast<T>(static_cast<A>(x[t]) * m);
  }
}

template <typename T>
void keep_mask_kernel(const T* x, T* out, int64_t n, uint64_t offset, uint32_t k0, uint32_t k1,
                      uint64_t threshold, double scale, bool serial) {
  using A = typename Acc<T>::type;
  // threshold 2**32 keeps nothing: every multiplier is +0 (x * 0, so NaN stays NaN).
  const bool none = threshold > 0xFFFFFFFFull;
  const uint32_t t32 = none ? 0u : static_cast<uint32_t>(threshold);
  const A keep = none ? A(0) : static_cast<A>(scale);
  // The caller passes either distinct, non-overlapping arrays or x == out.
  const bool in_place = static_cast<const void*>(x) == static_cast<const void*>(out);
  for_range(n, kGrain, serial, [=](int64_t begin, int64_t end) {
    for_each_block(begin, end, offset, k0, k1, [=](int64_t start, int64_t len, const uint32_t* w) {
      if (in_place) {
        keep_mask_run_inplace<T, A>(out + start, w, len, t32, keep);
      } else {
        keep_mask_run<T, A>(x + start, out + start, w, len, t32, keep);
      }
    });
  });
}

// One run of consecutive bias elements: t = x + bias, y = t * m, z = residual + y (three
// roundings in A, never contracted), then z rounded once to T. out may be x or residual itself
// (each element is read before it is written), so it is not restrict.
template <typename T, typename A>
inline void bias_dropout_add_run(const T* x, const T* __restrict bias, const T* residual, T* out,
                                 const uint32_t* __restrict w, int64_t len, uint32_t t32,
                                 A keep) {
  for (int64_t u = 0; u < len; ++u) {
    const A m = w[u] >= t32 ? keep : A(0);
    const A sum = static_cast<A>(x[u]) + static_cast<A>(bias[u]);
    const A dropped = sum * m;
    out[u] = static_cast<T>(static_cast<A>(residual[u]) + dropped);
  }
}

template <typename T>
void bias_dropout_add_kernel(const T* x, const T* bias, int64_t bias_n, const T* residual, T* out,
                             int64_t n, uint64_t offset, uint32_t k0, uint32_t k1,
                             uint64_t threshold, double scale, bool serial) {
  using A = typename Acc<T>::type;
  const bool none = threshold > 0xFFFFFFFFull;
  const uint32_t t32 = none ? 0u : static_cast<uint32_t>(threshold);
  const A keep = none ? A(0) : static_cast<A>(scale);
  for_range(n, kGrain, serial, [=](int64_t begin, int64_t end) {
    for_each_block(begin, end, offset, k0, k1, [=](int64_t start, int64_t len, const uint32_t* w) {
      int64_t t = 0;
      int64_t b = start % bias_n;
      while (t < len) {
        const int64_t run = std::min(len - t, bias_n - b);
        bias_dropout_add_run<T, A>(x + start + t, bias + b, residual + start + t, out + start + t,
                                   w + t, run, t32, keep);
        t += run;
        b = 0;
      }
    });
  });
}

void stream_words_kernel(int64_t* out, int64_t n, uint64_t offset, uint32_t k0, uint32_t k1,
                         bool serial) {
  for_range(n, kGrain, serial, [=](int64_t begin, int64_t end) {
    for_each_block(begin, end, offset, k0, k1, [=](int64_t start, int64_t len, const uint32_t* w) {
      int64_t* os = out + start;
      for (int64_t t = 0; t < len; ++t) {
        os[t] = static_cast<int64_t>(w[t]);
      }
    });
  });
}

// Box-Muller's uniforms for variates [0, n) at variate offset `offset` (stream words 2 (i + o)
// and 2 (i + o) + 1): u1 = ((w0 >> 8) + 1) 2^-24 in (0, 1], u2 = (w1 >> 8) 2^-24 in [0, 1).
void normal_uniforms_kernel(double* u1, double* u2, int64_t n, uint64_t offset, uint32_t k0,
                            uint32_t k1, bool serial) {
  constexpr double kInv24 = 1.0 / 16777216.0;
  for_range(n, kGrain / 2, serial, [=](int64_t begin, int64_t end) {
    // Variate i reads words 2 (i + offset) and 2 (i + offset) + 1: an even word index, so the
    // pair never straddles a counter. Walk the words of [2 begin, 2 end).
    for_each_block(2 * begin, 2 * end, 2 * offset, k0, k1,
                   [=](int64_t start, int64_t len, const uint32_t* w) {
                     // start and len are even: blocks start on even words (see for_each_block's
                     // shift, which is even here) and hold an even number of words.
                     const int64_t first = start / 2;
                     for (int64_t t = 0; t < len / 2; ++t) {
                       u1[first + t] = static_cast<double>((w[2 * t] >> 8) + 1u) * kInv24;
                       u2[first + t] = static_cast<double>(w[2 * t + 1] >> 8) * kInv24;
                     }
                   });
  });
}

// -- Alpha dropout's affine map and broadcast masks --------------------------------------------
//
// The multiplier m and the shift s of a mask element whose word is w: m = (w >= t32 ? mul : 0),
// s = (w >= t32 ? kept : dropped), all in A. Threshold 2**32 (nothing kept) becomes t32 = 0 with
// mul = 0 and kept = dropped: every word "passes", and the pair is (0, dropped), as required.
template <typename A>
struct Affine {
  uint32_t t32;
  A mul;
  A kept;
  A dropped;
  Affine(uint64_t threshold, double mul_, double kept_, double dropped_) {
    const bool none = threshold > 0xFFFFFFFFull;
    t32 = none ? 0u : static_cast<uint32_t>(threshold);
    mul = none ? A(0) : static_cast<A>(mul_);
    dropped = static_cast<A>(dropped_);
    kept = none ? dropped : static_cast<A>(kept_);
  }
};

// out[t] = x[t] * m + s from the words, two roundings in A (product, then sum: -ffp-contract=off
// keeps them apart), then one to T. Distinct arrays ...
template <typename T, typename A>
inline void keep_affine_run(const T* __restrict x, T* __restrict out,
                            const uint32_t* __restrict w, int64_t len, const Affine<A> f) {
  if constexpr (kHalfInBlocks<T>) {
    half_blocks(x, out, len, [&](const float* xs, float* os, int64_t first, int64_t count) {
      keep_affine_run<float, float>(xs, os, w + first, count, f);
    });
    return;
  }
  for (int64_t t = 0; t < len; ++t) {
    const bool kept = w[t] >= f.t32;
    const A m = kept ? f.mul : A(0);
    const A s = kept ? f.kept : f.dropped;
    const A product = static_cast<A>(x[t]) * m;
    out[t] = static_cast<T>(product + s);
  }
}

// ... and in place.
template <typename T, typename A>
inline void keep_affine_run_inplace(T* __restrict x, const uint32_t* __restrict w, int64_t len,
                                    const Affine<A> f) {
  if constexpr (kHalfInBlocks<T>) {
    half_blocks(x, x, len, [&](const float* xs, float* os, int64_t first, int64_t count) {
      keep_affine_run<float, float>(xs, os, w + first, count, f);
    });
    return;
  }
  for (int64_t t = 0; t < len; ++t) {
    const bool kept = w[t] >= f.t32;
    const A m = kept ? f.mul : A(0);
    const A s = kept ? f.kept : f.dropped;
    const A product = static_cast<A>(x[t]) * m;
    x[t] = static_cast<T>(product + s);
  }
}

// The affine map with a mask of x's own shape: one pass, as keep_mask_kernel.
template <typename T>
void keep_affine_kernel(const T* x, T* out, int64_t n, uint64_t offset, uint32_t k0, uint32_t k1,
                        const Affine<typename Acc<T>::type> f, bool serial) {
  using A = typename Acc<T>::type;
  const bool in_place = static_cast<const void*>(x) == static_cast<const void*>(out);
  for_range(n, kGrain, serial, [=](int64_t begin, int64_t end) {
    for_each_block(begin, end, offset, k0, k1, [=](int64_t start, int64_t len, const uint32_t* w) {
      if (in_place) {
        keep_affine_run_inplace<T, A>(out + start, w, len, f);
      } else {
        keep_affine_run<T, A>(x + start, out + start, w, len, f);
      }
    });
  });
}

// Broadcast masks. x (contiguous) is seen as [rows][b][c] with rows = a: its dimensions merged
// into a leading masked group (a elements of the mask), a broadcast group (b) and a trailing
// masked group (c). Mask element (i, k), i < a, k < c, is stream element i c + k; x element
// (i, j, k) reads it for every j < b. dropkit.kernels.cpu derives (a, b, c) from the shapes:
// channel dropout channels-first (a = N C, b = spatial, c = 1), channels-last (a = N, b = spatial,
// c = C), drop-path (a = N, b = rest, c = 1), locked dropout (T, N, C) (a = 1, b = T, c = N C).
//
// The a c multipliers (and shifts) are drawn first into a small buffer, by the same blocks as the
// one-pass kernels; then one parallel pass over x's elements multiplies runs: with c == 1 a run
// of b elements by one scalar (a vectorised scale), else a run of c elements by the buffer's row.

// out[t] = x[t] * m (+ s), m and s the same for the whole run.
template <typename T, typename A, bool kAffine>
inline void scalar_run(const T* __restrict x, T* __restrict out, int64_t len, A m, A s) {
  if constexpr (kHalfInBlocks<T>) {
    half_blocks(x, out, len, [&](const float* xs, float* os, int64_t, int64_t count) {
      scalar_run<float, float, kAffine>(xs, os, count, m, s);
    });
    return;
  }
  for (int64_t t = 0; t < len; ++t) {
    const A product = static_cast<A>(x[t]) * m;
    out[t] = static_cast<T>(kAffine ? product + s : product);
  }
}

template <typename T, typename A, bool kAffine>
inline void scalar_run_inplace(T* __restrict x, int64_t len, A m, A s) {
  if constexpr (kHalfInBlocks<T>) {
    half_blocks(x, x, len, [&](const float* xs, float* os, int64_t, int64_t count) {
      scalar_run<float, float, kAffine>(xs, os, count, m, s);
    });
    return;
  }
  for (int64_t t = 0; t < len; ++t) {
    const A product = static_cast<A>(x[t]) * m;
    x[t] = static_cast<T>(kAffine ? product + s : product);
  }
}

// out[t] = x[t] * m[t] (+ s[t]).
template <typename T, typename A, bool kAffine>
inline void row_run(const T* __restrict x, T* __restrict out, int64_t len,
                    const A* __restrict m, const A* __restrict s) {
  if constexpr (kHalfInBlocks<T>) {
    half_blocks(x, out, len, [&](const float* xs, float* os, int64_t first, int64_t count) {
      row_run<float, float, kAffine>(xs, os, count, m + first, kAffine ? s + first : nullptr);
    });
    return;
  }
  for (int64_t t = 0; t < len; ++t) {
    const A product = static_cast<A>(x[t]) * m[t];
    out[t] = static_cast<T>(kAffine ? product + s[t] : product);
  }
}

template <typename T, typename A, bool kAffine>
inline void row_run_inplace(T* __restrict x, int64_t len, const A* __restrict m,
                            const A* __restrict s) {
  if constexpr (kHalfInBlocks<T>) {
    half_blocks(x, x, len, [&](const float* xs, float* os, int64_t first, int64_t count) {
      row_run<float, float, kAffine>(xs, os, count, m + first, kAffine ? s + first : nullptr);
    });
    return;
  }
  for (int64_t t = 0; t < len; ++t) {
    const A product = static_cast<A>(x[t]) * m[t];
    x[t] = static_cast<T>(kAffine ? product + s[t] : product);
  }
}

template <typename T, bool kAffine>
void broadcast_kernel(const T* x, T* out, int64_t a, int64_t b, int64_t c, uint64_t offset,
                      uint32_t k0, uint32_t k1, const Affine<typename Acc<T>::type> f,
                      bool serial) {
  using A = typename Acc<T>::type;
  const int64_t mask_n = a * c;
  // The multipliers (and shifts), mask_n of each: at most x's size over b (b >= 2).
  std::vector<A> mult(static_cast<size_t>(mask_n));
  std::vector<A> shift(kAffine ? static_cast<size_t>(mask_n) : size_t(0));
  A* const mp = mult.data();
  A* const sp = shift.data();
  for_range(mask_n, kGrain, serial, [=](int64_t begin, int64_t end) {
    for_each_block(begin, end, offset, k0, k1, [=](int64_t start, int64_t len, const uint32_t* w) {
      for (int64_t t = 0; t < len; ++t) {
        const bool kept = w[t] >= f.t32;
        mp[start + t] = kept ? f.mul : A(0);
        if (kAffine) {
          sp[start + t] = kept ? f.kept : f.dropped;
        }
      }
    });
  });
  const bool in_place = static_cast<const void*>(x) == static_cast<const void*>(out);
  const int64_t n = a * b * c;
  for_range(n, kGrain, serial, [=](int64_t begin, int64_t end) {
    int64_t e = begin;
    if (c == 1) {
      // Row i is x[i b, (i + 1) b): one multiplier (and shift).
      int64_t i = e / b;
      while (e < end) {
        const int64_t stop = std::min(end, (i + 1) * b);
        const A s = kAffine ? sp[i] : A(0);
        if (in_place) {
          scalar_run_inplace<T, A, kAffine>(out + e, stop - e, mp[i], s);
        } else {
          scalar_run<T, A, kAffine>(x + e, out + e, stop - e, mp[i], s);
        }
        e = stop;
        ++i;
      }
    } else {
      // Row r = i b + j is x[r c, (r + 1) c): the multipliers of mask row i, from column k on.
      // i and j advance by counting (no division per row: rows may be short, e.g. 64 channels).
      const int64_t r = e / c;
      int64_t i = r / b;
      int64_t j = r - i * b;
      int64_t k = e - r * c;
      while (e < end) {
        const int64_t len = std::min(end - e, c - k);
        const A* m = mp + i * c + k;
        const A* s = kAffine ? sp + i * c + k : nullptr;
        if (in_place) {
          row_run_inplace<T, A, kAffine>(out + e, len, m, s);
        } else {
          row_run<T, A, kAffine>(x + e, out + e, len, m, s);
        }
        e += len;
        k = 0;
        if (++j == b) {
          j = 0;
          ++i;
        }
      }
    }
  });
}

}  // namespace

// -- The operators ---------------------------------------------------------------------------------

namespace {

// In a forked child the kernels run on the calling thread: GNU OpenMP (torch's CPU wheels) cannot
// start a thread team in a child forked after its parent used one. dropkit loads this library
// when it is imported, so the handler is in place before any fork a user makes after import.
bool g_forked_child = false;

struct ForkWatch {
  ForkWatch() { pthread_atfork(nullptr, nullptr, [] { g_forked_child = true; }); }
} g_fork_watch;

// The Philox key of a seed: (low word, high word) of its 64 bits.
struct Key {
  uint32_t k0;
  uint32_t k1;
};

Key seed_key(const at::Tensor& seed, const char* op) {
  TORCH_CHECK(seed.numel() == 1 && seed.scalar_type() == at::kLong && seed.device().is_cpu(),
              op, ": seed must be a one-element int64 CPU tensor, got ", seed.scalar_type(),
              " of shape ", seed.sizes(), " on ", seed.device());
  // Read directly: item() would be a second trip through the dispatcher.
  const auto s = static_cast<uint64_t>(*seed.const_data_ptr<int64_t>());
  return {static_cast<uint32_t>(s & 0xFFFFFFFFull), static_cast<uint32_t>(s >> 32)};
}

void check_stream(const char* op, int64_t offset, int64_t threshold, int64_t words) {
  TORCH_CHECK(offset >= 0 && offset <= INT64_MAX - words, op,
              ": offset must be >= 0 with offset + numel <= 2**63 - 1, got offset=", offset,
              " for numel=", words);
  TORCH_CHECK(threshold >= 0 && threshold <= (int64_t(1) << 32), op,
              ": threshold must be in [0, 2**32], got ", threshold);
}

template <typename F>
void dispatch_floating(at::ScalarType dtype, const char* op, const F& f) {
  switch (dtype) {
    case at::kFloat:
      f(float{});
      break;
    case at::kDouble:
      f(double{});
      break;
    case at::kHalf:
      f(c10::Half{});
      break;
    case at::kBFloat16:
      f(c10::BFloat16{});
      break;
    default:
      TORCH_CHECK(false, op, ": x must be float16, bfloat16, float32 or float64, got ", dtype);
  }
}

at::ScalarType accumulation_type(at::ScalarType dtype) {
  return dtype == at::kDouble ? at::kDouble : at::kFloat;
}

// x seen in memory order as [a][b][c], the mask (a c elements, row-major over the mask's own
// logical shape) broadcast over b. Found when x is dense in some order of its dimensions (row-major,
// channels-last, ...) and that order keeps the masked dimensions in their logical order, with the
// broadcast dimensions forming one run between masked ones. b == 1: the mask has x's elements.
struct Pattern {
  bool found = false;
  int64_t a = 1;
  int64_t b = 1;
  int64_t c = 1;
};

Pattern broadcast_pattern(const at::Tensor& x, c10::IntArrayRef mask_shape) {
  Pattern p;
  const int64_t dims = x.dim();
  // Dimensions of size > 1 in memory order (strides decreasing); a dense tensor has, in that
  // order, stride[d] == product of the sizes after d.
  std::vector<int64_t> order;
  for (int64_t d = 0; d < dims; ++d) {
    if (x.size(d) > 1) {
      order.push_back(d);
    }
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t u, int64_t v) { return x.stride(u) > x.stride(v); });
  int64_t expected = 1;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    if (x.stride(*it) != expected) {
      return p;  // not dense: gaps or overlap
    }
    expected *= x.size(*it);
  }
  // Merge runs of one kind (masked or broadcast); masked dimensions must keep their logical order.
  std::vector<std::pair<bool, int64_t>> groups;
  int64_t last_masked = -1;
  for (int64_t d : order) {
    const bool masked = mask_shape[d] == x.size(d);
    if (masked) {
      if (d < last_masked) {
        return p;
      }
      last_masked = d;
    }
    if (!groups.empty() && groups.back().first == masked) {
      groups.back().second *= x.size(d);
    } else {
      groups.emplace_back(masked, x.size(d));
    }
  }
  std::vector<bool> kinds;
  for (const auto& g : groups) {
    kinds.push_back(g.first);
  }
  const auto size = [&](size_t i) { return groups[i].second; };
  p.found = true;
  if (groups.empty()) {
    return p;  // one element
  }
  if (std::find(kinds.begin(), kinds.end(), false) == kinds.end()) {
    p.a = 1;
    for (size_t i = 0; i < groups.size(); ++i) {
      p.a *= size(i);
    }
  } else if (kinds == std::vector<bool>{false}) {
    p.b = size(0);
  } else if (kinds == std::vector<bool>{true, false}) {
    p.a = size(0);
    p.b = size(1);
  } else if (kinds == std::vector<bool>{false, true}) {
    p.b = size(0);
    p.c = size(1);
  } else if (kinds == std::vector<bool>{true, false, true}) {
    p.a = size(0);
    p.b = size(1);
    p.c = size(2);
  } else {
    p.found = false;
  }
  return p;
}

void check_mask_shape(const char* op, const at::Tensor& x, c10::IntArrayRef mask_shape) {
  bool valid = static_cast<int64_t>(mask_shape.size()) == x.dim();
  for (int64_t d = 0; valid && d < x.dim(); ++d) {
    valid = mask_shape[d] == x.size(d) || mask_shape[d] == 1;
  }
  TORCH_CHECK(valid, op, ": mask_shape must have one entry per dimension of x, each x's size or 1, "
              "got ", mask_shape, " for x of shape ", x.sizes());
}

int64_t numel_of(c10::IntArrayRef shape) {
  int64_t n = 1;
  for (int64_t s : shape) {
    n *= s;
  }
  return n;
}

// x * M (+ B) written into out (x itself, or a fresh tensor of x's layout), through the one-pass
// kernels where the pattern allows, else through a multiplier tensor of the mask's shape.
void keep_into(const char* op, const at::Tensor& x, at::Tensor& out, const Key key,
               int64_t offset, int64_t threshold, double mul, bool affine, double kept,
               double dropped, c10::IntArrayRef mask_shape) {
  const auto off = static_cast<uint64_t>(offset);
  const auto thr = static_cast<uint64_t>(threshold);
  const bool serial = g_forked_child;
  const at::ScalarType acc = accumulation_type(x.scalar_type());
  const Pattern p = broadcast_pattern(x, mask_shape);
  if (p.found) {
    dispatch_floating(x.scalar_type(), op, [&](auto tag) {
      using T = decltype(tag);
      using A = typename Acc<T>::type;
      const T* xs = x.const_data_ptr<T>();
      T* os = out.mutable_data_ptr<T>();
      const Affine<A> f(thr, mul, kept, dropped);
      if (p.b == 1) {
        if (affine) {
          keep_affine_kernel<T>(xs, os, p.a * p.c, off, key.k0, key.k1, f, serial);
        } else {
          keep_mask_kernel<T>(xs, os, p.a * p.c, off, key.k0, key.k1, thr, mul, serial);
        }
      } else if (affine) {
        broadcast_kernel<T, true>(xs, os, p.a, p.b, p.c, off, key.k0, key.k1, f, serial);
      } else {
        broadcast_kernel<T, false>(xs, os, p.a, p.b, p.c, off, key.k0, key.k1, f, serial);
      }
    });
    return;
  }
  // Any other layout: the multiplier of the mask's shape (one pass over ones: 1 * mul is exact),
  // then torch's own operations, rounded as the reference rounds them.
  at::Tensor m = at::ones(mask_shape, x.options().dtype(acc));
  const double first = affine ? 1.0 : mul;  // affine: the kept indicator first
  dispatch_floating(acc, op, [&](auto tag) {
    using A = decltype(tag);
    A* ms = m.mutable_data_ptr<A>();
    keep_mask_kernel<A>(ms, ms, m.numel(), off, key.k0, key.k1, thr, first, serial);
  });
  if (!affine) {
    at::mul_out(out, x, m);
    return;
  }
  // Kept or dropped by the stream word (as the reference), whatever mul rounds to.
  const at::Tensor kept_mask = m.ne(0);
  const at::Tensor mult = at::where(kept_mask, at::scalar_tensor(mul, m.options()),
                                    at::scalar_tensor(0.0, m.options()));
  const at::Tensor shift = at::where(kept_mask, at::scalar_tensor(kept, m.options()),
                                     at::scalar_tensor(dropped, m.options()));
  out.copy_(x.to(acc).mul(mult).add_(shift));
}

// A fresh large output is backed by transparent huge pages, populated before the kernel writes it:
// a new 64 MiB buffer otherwise faults in 4 KiB at a time on first write, inside the parallel
// kernel, which measured slower than the kernel itself (docs/design/backends.md). Below glibc's
// largest mmap threshold (32 MiB) freed blocks are reused already mapped, and advice only costs
// time. The advice changes no value; where it is refused, pages fault in as usual.
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux >= 5.14; older kernels answer EINVAL
#endif
constexpr size_t kAdviseMinBytes = size_t(32) << 20;

at::Tensor fresh_output(const at::Tensor& x) {
  at::Tensor out = at::empty_like(x);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const size_t nbytes = out.storage().nbytes();
  if (nbytes >= kAdviseMinBytes) {
    const auto address = reinterpret_cast<uintptr_t>(out.storage().data());
    const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    const uintptr_t huge = uintptr_t(1) << 21;
    // Only whole pages inside the buffer: never advise memory that is not ours.
    const auto advise = [&](uintptr_t align, int advice) {
      const uintptr_t start = (address + align - 1) & ~(align - 1);
      const uintptr_t stop = (address + nbytes) & ~(align - 1);
      if (stop > start) {
        madvise(reinterpret_cast<void*>(start), stop - start, advice);
      }
    };
    advise(huge, MADV_HUGEPAGE);
    advise(page, MADV_POPULATE_WRITE);
  }
#endif
  return out;
}

at::Tensor keep_cpu(const at::Tensor& x, const at::Tensor& seed, int64_t offset,
                    int64_t threshold, double scale, c10::IntArrayRef mask_shape) {
  check_mask_shape("dropkit::keep", x, mask_shape);
  check_stream("dropkit::keep", offset, threshold, numel_of(mask_shape));
  const Key key = seed_key(seed, "dropkit::keep");
  at::Tensor out = fresh_output(x);
  if (x.numel() > 0) {
    keep_into("dropkit::keep", x, out, key, offset, threshold, scale, false, 0.0, 0.0, mask_shape);
  }
  return out;
}

at::Tensor& keep_inplace_cpu(at::Tensor& x, const at::Tensor& seed, int64_t offset,
                             int64_t threshold, double scale, c10::IntArrayRef mask_shape) {
  check_mask_shape("dropkit::keep_", x, mask_shape);
  check_stream("dropkit::keep_", offset, threshold, numel_of(mask_shape));
  const Key key = seed_key(seed, "dropkit::keep_");
  if (x.numel() > 0) {
    keep_into("dropkit::keep_", x, x, key, offset, threshold, scale, false, 0.0, 0.0, mask_shape);
  }
  return x;
}

at::Tensor keep_affine_cpu(const at::Tensor& x, const at::Tensor& seed, int64_t offset,
                           int64_t threshold, double a, double kept_shift, double dropped_value,
                           c10::IntArrayRef mask_shape) {
  check_mask_shape("dropkit::keep_affine", x, mask_shape);
  check_stream("dropkit::keep_affine", offset, threshold, numel_of(mask_shape));
  const Key key = seed_key(seed, "dropkit::keep_affine");
  at::Tensor out = fresh_output(x);
  if (x.numel() > 0) {
    keep_into("dropkit::keep_affine", x, out, key, offset, threshold, a, true, kept_shift,
              dropped_value, mask_shape);
  }
  return out;
}

at::Tensor& keep_affine_inplace_cpu(at::Tensor& x, const at::Tensor& seed, int64_t offset,
                                    int64_t threshold, double a, double kept_shift,
                                    double dropped_value, c10::IntArrayRef mask_shape) {
  check_mask_shape("dropkit::keep_affine_", x, mask_shape);
  check_stream("dropkit::keep_affine_", offset, threshold, numel_of(mask_shape));
  const Key key = seed_key(seed, "dropkit::keep_affine_");
  if (x.numel() > 0) {
    keep_into("dropkit::keep_affine_", x, x, key, offset, threshold, a, true, kept_shift,
              dropped_value, mask_shape);
  }
  return x;
}

// residual + (x + bias) * M, bias of x's trailing shape. Any layout: dense row-major copies in,
// the result in x's layout (the element-wise arithmetic does not depend on the order).
at::Tensor bias_dropout_add_cpu(const at::Tensor& x, const at::Tensor& bias,
                                const at::Tensor& residual, const at::Tensor& seed,
                                int64_t offset, int64_t threshold, double scale) {
  const char* op = "dropkit::bias_dropout_add";
  TORCH_CHECK(residual.sizes() == x.sizes(), op, ": residual must have x's shape ", x.sizes(),
              ", got ", residual.sizes());
  TORCH_CHECK(bias.scalar_type() == x.scalar_type() && residual.scalar_type() == x.scalar_type(),
              op, ": x, bias and residual must share one dtype");
  TORCH_CHECK(bias.dim() <= x.dim() &&
                  x.sizes().slice(x.dim() - bias.dim()).equals(bias.sizes()),
              op, ": bias must have x's trailing shape, got ", bias.sizes(), " for x of shape ",
              x.sizes());
  check_stream(op, offset, threshold, x.numel());
  const Key key = seed_key(seed, op);
  const at::Tensor xc = x.contiguous(), bc = bias.contiguous(), rc = residual.contiguous();
  at::Tensor out = fresh_output(xc);
  const int64_t n = xc.numel();
  if (n > 0) {
    dispatch_floating(x.scalar_type(), op, [&](auto tag) {
      using T = decltype(tag);
      bias_dropout_add_kernel<T>(xc.const_data_ptr<T>(), bc.const_data_ptr<T>(),
                                 std::max<int64_t>(bc.numel(), 1), rc.const_data_ptr<T>(),
                                 out.mutable_data_ptr<T>(), n, static_cast<uint64_t>(offset),
                                 key.k0, key.k1, static_cast<uint64_t>(threshold), scale,
                                 g_forked_child);
    });
  }
  if (x.is_contiguous()) {
    return out;
  }
  return at::empty_like(x).copy_(out);
}

// The stream words [0, n) at offset into an int64 tensor (the plain-torch methods' source).
at::Tensor& stream_words_cpu(at::Tensor& out, const at::Tensor& seed, int64_t offset) {
  TORCH_CHECK(out.scalar_type() == at::kLong && out.is_contiguous(),
              "dropkit::_stream_words: out must be a contiguous int64 tensor");
  check_stream("dropkit::_stream_words", offset, 0, out.numel());
  const Key key = seed_key(seed, "dropkit::_stream_words");
  stream_words_kernel(out.mutable_data_ptr<int64_t>(), out.numel(),
                      static_cast<uint64_t>(offset), key.k0, key.k1, g_forked_child);
  return out;
}

// Box-Muller's uniforms of variates [0, n) at variate offset `offset` (see normal_uniforms_kernel).
std::tuple<at::Tensor, at::Tensor> normal_uniforms_cpu(int64_t n, const at::Tensor& seed,
                                                       int64_t offset) {
  TORCH_CHECK(n >= 0 && offset >= 0 && offset <= INT64_MAX / 2 - n,
              "dropkit::_normal_uniforms: offset must be >= 0 with 2 * (offset + n) <= 2**63 - 1,"
              " got offset=", offset, " for n=", n);
  const Key key = seed_key(seed, "dropkit::_normal_uniforms");
  at::Tensor u1 = at::empty({n}, at::kDouble), u2 = at::empty({n}, at::kDouble);
  normal_uniforms_kernel(u1.mutable_data_ptr<double>(), u2.mutable_data_ptr<double>(), n,
                         static_cast<uint64_t>(offset), key.k0, key.k1, g_forked_child);
  return {u1, u2};
}

// -- Autograd: the gradient of x * M (+ B) is grad * M, the keep op on the gradient ---------------

using KeepSignature = at::Tensor(const at::Tensor&, const at::Tensor&, int64_t, int64_t, double,
                                 c10::IntArrayRef);
using AffineSignature = at::Tensor(const at::Tensor&, const at::Tensor&, int64_t, int64_t, double,
                                   double, double, c10::IntArrayRef);
using BiasSignature = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                 const at::Tensor&, int64_t, int64_t, double);

// The operator's handle; each call site keeps its own in a function-local static.
template <typename Signature>
c10::TypedOperatorHandle<Signature> find_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").template typed<Signature>();
}

const c10::TypedOperatorHandle<KeepSignature>& keep_op() {
  static const auto handle =
      c10::Dispatcher::singleton().findSchemaOrThrow("dropkit::keep", "").typed<KeepSignature>();
  return handle;
}

// The autograd nodes: hand-written as torch's generated ones are (a node, its next edges, the
// output's history), since torch::autograd::Function's string-keyed saved_data and its
// bookkeeping cost more per call than the kernel itself at small sizes. Each keeps the seed as
// its 0-d tensor (never read here: under a compiler it is a traced value) and the scalars, so
// nothing of x's size is saved. Backward calls the op through the dispatcher: a gradient that
// requires grad (double backward) records a node again, and CUDA tensors reach their own kernel.
struct KeepBackward : public torch::autograd::Node {
  at::Tensor seed;
  int64_t offset = 0;
  int64_t threshold = 0;
  double scale = 1.0;
  std::vector<int64_t> mask_shape;

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    if (!grads[0].defined()) {
      return {at::Tensor()};
    }
    return {keep_op().call(grads[0], seed, offset, threshold, scale, mask_shape)};
  }
  std::string name() const override { return "dropkit::KeepBackward"; }
};

// residual + (x + bias) * M: grad_x = grad * M, grad_bias = grad_x summed to the bias's shape,
// grad_residual = grad.
struct BiasDropoutAddBackward : public torch::autograd::Node {
  at::Tensor seed;
  int64_t offset = 0;
  int64_t threshold = 0;
  double scale = 1.0;
  std::vector<int64_t> x_shape;
  std::vector<int64_t> bias_shape;

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    const at::Tensor& grad = grads[0];
    if (!grad.defined()) {
      return {at::Tensor(), at::Tensor(), at::Tensor()};
    }
    at::Tensor grad_x, grad_bias;
    if (should_compute_output(0) || should_compute_output(1)) {
      grad_x = keep_op().call(grad, seed, offset, threshold, scale, x_shape);
    }
    if (should_compute_output(1)) {
      grad_bias = grad_x.sum_to_size(bias_shape);
    }
    return {should_compute_output(0) ? grad_x : at::Tensor(), grad_bias,
            should_compute_output(2) ? grad : at::Tensor()};
  }
  std::string name() const override { return "dropkit::BiasDropoutAddBackward"; }
};

// Without a gradient to record, the kernel is called directly: no node, no saved state.
bool records_grad(const at::Tensor& x) {
  return at::GradMode::is_enabled() && x.requires_grad();
}

// A new node of type N whose next edges are the inputs' gradient edges. Nodes are held by
// c10::intrusive_ptr in newer torch and by std::shared_ptr in older (torch 2.11 on the GPU
// machines): the pointer type is read off autograd's own Edge.
using NodePtr = decltype(torch::autograd::Edge::function);

template <typename N>
auto node_for(const at::TensorList inputs) {
  if constexpr (std::is_same_v<NodePtr, std::shared_ptr<torch::autograd::Node>>) {
    auto node = std::make_shared<N>();
    node->set_next_edges(torch::autograd::collect_next_edges(inputs));
    return node;
  } else {
    auto node = c10::make_intrusive<N>();
    node->set_next_edges(torch::autograd::collect_next_edges(inputs));
    return node;
  }
}

template <typename N>
void fill_stream(N& node, const at::Tensor& seed, int64_t offset, int64_t threshold,
                 double scale) {
  node.seed = seed;
  node.offset = offset;
  node.threshold = threshold;
  node.scale = scale;
}

at::Tensor keep_autograd(const at::Tensor& x, const at::Tensor& seed, int64_t offset,
                         int64_t threshold, double scale, c10::IntArrayRef mask_shape) {
  at::Tensor out;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    out = keep_op().call(x, seed, offset, threshold, scale, mask_shape);
  }
  if (records_grad(x)) {
    auto node = node_for<KeepBackward>({x});
    fill_stream(*node, seed, offset, threshold, scale);
    node->mask_shape = mask_shape.vec();
    torch::autograd::set_history(out, node);
  }
  return out;
}

at::Tensor keep_affine_autograd(const at::Tensor& x, const at::Tensor& seed, int64_t offset,
                                int64_t threshold, double a, double kept_shift,
                                double dropped_value, c10::IntArrayRef mask_shape) {
  static const auto op = find_op<AffineSignature>("dropkit::keep_affine");
  at::Tensor out;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    out = op.call(x, seed, offset, threshold, a, kept_shift, dropped_value, mask_shape);
  }
  if (records_grad(x)) {  // d/dx (x M + B) = M: the keep op with the affine map's factor
    auto node = node_for<KeepBackward>({x});
    fill_stream(*node, seed, offset, threshold, a);
    node->mask_shape = mask_shape.vec();
    torch::autograd::set_history(out, node);
  }
  return out;
}

at::Tensor bias_dropout_add_autograd(const at::Tensor& x, const at::Tensor& bias,
                                     const at::Tensor& residual, const at::Tensor& seed,
                                     int64_t offset, int64_t threshold, double scale) {
  static const auto op = find_op<BiasSignature>("dropkit::bias_dropout_add");
  at::Tensor out;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    out = op.call(x, bias, residual, seed, offset, threshold, scale);
  }
  if (records_grad(x) || records_grad(bias) || records_grad(residual)) {
    auto node = node_for<BiasDropoutAddBackward>({x, bias, residual});
    fill_stream(*node, seed, offset, threshold, scale);
    node->x_shape = x.sizes().vec();
    node->bias_shape = bias.sizes().vec();
    torch::autograd::set_history(out, node);
  }
  return out;
}

// -- In place: the version counter ----------------------------------------------------------------
// An in-place operator must bump its input's version, so that autograd refuses a backward that
// would read the overwritten values (torch's own in-place ops do this in their ADInplaceOrView
// kernels). Registered for the ADInplaceOrView key, so it holds for every device's kernel.
using KeepInplaceSignature = at::Tensor&(at::Tensor&, const at::Tensor&, int64_t, int64_t, double,
                                         c10::IntArrayRef);
using AffineInplaceSignature = at::Tensor&(at::Tensor&, const at::Tensor&, int64_t, int64_t,
                                           double, double, double, c10::IntArrayRef);

at::Tensor& keep_inplace_version(at::Tensor& x, const at::Tensor& seed, int64_t offset,
                                 int64_t threshold, double scale, c10::IntArrayRef mask_shape) {
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    static const auto op = find_op<KeepInplaceSignature>("dropkit::keep_");
    op.call(x, seed, offset, threshold, scale, mask_shape);
  }
  torch::autograd::increment_version(x);
  return x;
}

at::Tensor& keep_affine_inplace_version(at::Tensor& x, const at::Tensor& seed, int64_t offset,
                                        int64_t threshold, double a, double kept_shift,
                                        double dropped_value, c10::IntArrayRef mask_shape) {
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    static const auto op = find_op<AffineInplaceSignature>("dropkit::keep_affine_");
    op.call(x, seed, offset, threshold, a, kept_shift, dropped_value, mask_shape);
  }
  torch::autograd::increment_version(x);
  return x;
}

}  // namespace

TORCH_LIBRARY_IMPL(dropkit, ADInplaceOrView, m) {
  m.impl("keep_", keep_inplace_version);
  m.impl("keep_affine_", keep_affine_inplace_version);
}

TORCH_LIBRARY_IMPL(dropkit, CPU, m) {
  m.impl("keep", keep_cpu);
  m.impl("keep_", keep_inplace_cpu);
  m.impl("keep_affine", keep_affine_cpu);
  m.impl("keep_affine_", keep_affine_inplace_cpu);
  m.impl("bias_dropout_add", bias_dropout_add_cpu);
  m.impl("_stream_words", stream_words_cpu);
  m.impl("_normal_uniforms", normal_uniforms_cpu);
}

TORCH_LIBRARY_IMPL(dropkit, Autograd, m) {
  m.impl("keep", keep_autograd);
  m.impl("keep_affine", keep_affine_autograd);
  m.impl("bias_dropout_add", bias_dropout_add_autograd);
}
