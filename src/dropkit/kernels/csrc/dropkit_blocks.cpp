// dropkit::blocks on the CPU: DropBlock (Ghiasi, Lin, Le 2018), bit for bit equal to
// dropkit.kernels.reference.blocks (the definition of its values).
//
// x is (N, C, *S) with 1 to 3 spatial dimensions, seen here as (D, H, W) with leading sizes 1. The
// seed map has N C' planes of S = prod(S_d) elements (C' = C with per_channel, else 1); element
// k of it (row-major) reads stream word offset + k and is a seed iff that word is < threshold
// and, unless clip, its position i has a_d <= i_d <= S_d - k_d + a_d (a_d = k_d / 2). A seed at i
// drops [i_d - a_d, i_d - a_d + k_d) in every dimension, clipped to the map.
//
// Three passes: (1) per plane, in parallel: the seeds from the stream, then the dropped elements
// as one byte each (boxes painted seed by seed, or, where the seeds are many, a separable
// dilation by prefix counts along each dimension), and their count; (2) the scales from the
// counts, with the reference's operations in its order (kept = float(count) * repeat, then
// (1 / (eps + kept)) * (per * repeat), each rounded in the accumulation type A); (3) one parallel
// pass writing x * M (+ B) into a tensor of x's layout. With noise, B holds the stream's standard
// normals (dropkit::_normal_uniforms and Box-Muller in torch's own float64 operations, as the
// reference), M is 0 or 1 and nothing is rescaled; without affine the shift is left out (the
// gradient). Compiled with dropkit_ops.cpp (same flags: no fused multiply-add, no fast-math).

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/cos.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/log.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/sqrt.h>
#include <pthread.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "philox.h"

namespace {

constexpr int64_t kBlockWords = 128;
constexpr int64_t kGrain = 1 << 15;

// body(start, len, words): element start + t reads stream word words[t] (index start + t + offset).
template <typename Body>
inline void for_each_block(int64_t begin, int64_t end, uint64_t offset, const RoundKeys& keys,
                           const Body& body) {
  alignas(64) uint32_t buffer[kBlockWords + 4];
  for (int64_t start = begin; start < end;) {
    const uint64_t j = static_cast<uint64_t>(start) + offset;
    const int64_t shift = static_cast<int64_t>(j & 3u);
    const int64_t len = std::min(end - start, kBlockWords - shift);
    philox_block(j >> 2, (shift + len + 3) / 4, keys, buffer);
    body(start, len, buffer + shift);
    start += len;
  }
}

// In a forked child GNU OpenMP cannot start a team: run on the calling thread there.
bool g_forked_child = false;
struct ForkWatch {
  ForkWatch() { pthread_atfork(nullptr, nullptr, [] { g_forked_child = true; }); }
} g_fork_watch;

template <typename F>
inline void for_range(int64_t n, int64_t grain, const F& f) {
  if (g_forked_child) {
    if (n > 0) {
      f(int64_t(0), n);
    }
  } else {
    at::parallel_for(0, n, grain, f);
  }
}

// -- the mask ----------------------------------------------------------------------------------
struct Geometry {
  int64_t size[3] = {1, 1, 1};  // (D, H, W)
  int64_t k[3] = {1, 1, 1};
  int64_t a[3] = {0, 0, 0};
  int64_t lo[3] = {0, 0, 0};  // the seed region, [lo, hi] per dimension
  int64_t hi[3] = {0, 0, 0};
  int64_t plane = 1;
  int64_t volume = 1;  // elements of one block
  bool clip = false;
};

Geometry geometry(c10::IntArrayRef spatial, c10::IntArrayRef sizes, bool clip) {
  Geometry g;
  g.clip = clip;
  const int64_t skip = 3 - static_cast<int64_t>(spatial.size());
  for (int64_t d = 0; d < 3; ++d) {
    if (d >= skip) {
      g.size[d] = spatial[d - skip];
      g.k[d] = sizes[d - skip];
    }
    g.a[d] = g.k[d] / 2;
    g.lo[d] = clip ? 0 : g.a[d];
    g.hi[d] = clip ? g.size[d] - 1 : g.size[d] - g.k[d] + g.a[d];
    g.plane *= g.size[d];
    g.volume *= g.k[d];
  }
  return g;
}

// Every line along dimension d (length L, element stride `inner`, `outer` lines): element j is
// set iff a seed lies in [j + a - k + 1, j + a] (prefix counts of the line's seeds).
void dilate(uint8_t* m, int64_t outer, int64_t length, int64_t inner, int64_t k, int64_t a,
            std::vector<int32_t>& prefix) {
  prefix.resize(static_cast<size_t>(length + 1));
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      uint8_t* line = m + o * length * inner + i;
      prefix[0] = 0;
      for (int64_t j = 0; j < length; ++j) {
        prefix[j + 1] = prefix[j] + line[j * inner];
      }
      for (int64_t j = 0; j < length; ++j) {
        const int64_t top = std::min(j + a, length - 1), bottom = std::max(j + a - k + 1, int64_t(0));
        line[j * inner] = top >= bottom && prefix[top + 1] > prefix[bottom];
      }
    }
  }
}

// One plane's dropped elements (m zeroed) from its seeds (positions in the plane, in order);
// returns the number of seeds in the region.
int64_t grow_plane(uint8_t* m, const int64_t* seeds, int64_t count, const Geometry& g,
                std::vector<int32_t>& prefix) {
  const int64_t hw = g.size[1] * g.size[2];
  int64_t kept_seeds = 0;
  const bool paint = count * g.volume <= 4 * g.plane;  // few seeds: paint their boxes
  for (int64_t s = 0; s < count; ++s) {
    const int64_t pos = seeds[s];
    if (!paint && g.clip) {  // every position is in the region
      m[pos] = 1;
      ++kept_seeds;
      continue;
    }
    const int64_t i[3] = {pos / hw, (pos % hw) / g.size[2], pos % g.size[2]};
    bool inside = true;
    for (int d = 0; d < 3; ++d) {
      inside = inside && g.lo[d] <= i[d] && i[d] <= g.hi[d];
    }
    if (!inside) {
      continue;
    }
    ++kept_seeds;
    if (!paint) {
      m[pos] = 1;
      continue;
    }
    int64_t from[3], to[3];
    for (int d = 0; d < 3; ++d) {
      from[d] = std::max(i[d] - g.a[d], int64_t(0));
      to[d] = std::min(i[d] - g.a[d] + g.k[d], g.size[d]);
    }
    for (int64_t z = from[0]; z < to[0]; ++z) {
      for (int64_t y = from[1]; y < to[1]; ++y) {
        uint8_t* row = m + z * hw + y * g.size[2];
        for (int64_t w = from[2]; w < to[2]; ++w) {  // short runs: no call to memset
          row[w] = 1;
        }
      }
    }
  }
  if (!paint && kept_seeds > 0) {
    dilate(m, 1, g.size[0], hw, g.k[0], g.a[0], prefix);
    dilate(m, g.size[0], g.size[1], g.size[2], g.k[1], g.a[1], prefix);
    dilate(m, g.size[0] * g.size[1], g.size[2], 1, g.k[2], g.a[2], prefix);
  }
  return kept_seeds;
}

// Appends start + t for every word w[t] < t32 (every word if all): seeds are rare, so the words
// are compared 16 (AVX-512) or 8 (AVX2) at a time and only the set bits of the result visited.
inline void find_seeds(const uint32_t* w, int64_t len, uint32_t t32, bool all, int64_t start,
                       std::vector<int64_t>& seeds) {
  int64_t t = 0;
  if (all) {
    for (; t < len; ++t) {
      seeds.push_back(start + t);
    }
    return;
  }
#if defined(__AVX512F__)
  const __m512i limit = _mm512_set1_epi32(static_cast<int>(t32));
  for (; t + 16 <= len; t += 16) {
    uint32_t bits = _mm512_cmplt_epu32_mask(_mm512_loadu_si512(w + t), limit);
    for (; bits != 0; bits &= bits - 1) {
      seeds.push_back(start + t + __builtin_ctz(bits));
    }
  }
#elif defined(__AVX2__)
  const __m256i flip = _mm256_set1_epi32(static_cast<int>(0x80000000u));
  const __m256i limit = _mm256_set1_epi32(static_cast<int>(t32 ^ 0x80000000u));
  for (; t + 8 <= len; t += 8) {
    const __m256i v =
        _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + t)), flip);
    auto bits = static_cast<uint32_t>(
        _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(limit, v))));
    for (; bits != 0; bits &= bits - 1) {
      seeds.push_back(start + t + __builtin_ctz(bits));
    }
  }
#endif
  for (; t < len; ++t) {
    if (w[t] < t32) {
      seeds.push_back(start + t);
    }
  }
}

// mask[p S + s] = 1 where element s of seed-map plane p is dropped; dropped[p] their count.
void block_mask(uint8_t* mask, int64_t* dropped, int64_t planes, const Geometry& g,
                uint64_t offset, const RoundKeys& keys, uint64_t threshold) {
  const bool all = threshold > 0xFFFFFFFFull;
  const auto t32 = static_cast<uint32_t>(all ? 0 : threshold);
  const int64_t plane = g.plane;
  for_range(planes, std::max<int64_t>(1, kGrain / plane), [&](int64_t begin, int64_t end) {
    std::memset(mask + begin * plane, 0, static_cast<size_t>((end - begin) * plane));
    std::vector<int64_t> seeds;
    std::vector<int32_t> prefix;
    for_each_block(begin * plane, end * plane, offset, keys,
                   [&](int64_t start, int64_t len, const uint32_t* w) {
                     find_seeds(w, len, t32, all, start, seeds);
                   });
    size_t next = 0;
    for (int64_t p = begin; p < end; ++p) {
      const size_t first = next;
      while (next < seeds.size() && seeds[next] < (p + 1) * plane) {
        seeds[next] -= p * plane;
        ++next;
      }
      uint8_t* m = mask + p * plane;
      int64_t count = 0;
      if (grow_plane(m, seeds.data() + first, static_cast<int64_t>(next - first), g, prefix)) {
        for (int64_t s = 0; s < plane; s += 1 << 16) {  // 32-bit sums vectorise better
          uint32_t part = 0;
          for (int64_t t = s; t < std::min(plane, s + (1 << 16)); ++t) {
            part += m[t];
          }
          count += part;
        }
      }
      dropped[p] = count;
    }
  });
}

// -- the output pass -----------------------------------------------------------------------------
template <typename T>
struct Acc {
  using type = float;
};
template <>
struct Acc<double> {
  using type = double;
};

// f(r, i, j) for the rows r = i inner + j (i < outer, j < inner) of len elements, in parallel;
// i and j advance by counting (rows may be short: a 7 x 7 map).
template <typename F>
void for_rows(int64_t outer, int64_t inner, int64_t len, const F& f) {
  for_range(outer * inner, std::max<int64_t>(1, kGrain / std::max<int64_t>(len, 1)),
            [&](int64_t begin, int64_t end) {
              int64_t i = begin / inner, j = begin % inner;
              for (int64_t r = begin; r < end; ++r) {
                f(r, i, j);
                if (++j == inner) {
                  j = 0;
                  ++i;
                }
              }
            });
}

// The runs of the output pass: the product in A, rounded once to T. out[t] = x[t] * m[t] ...
template <typename T, typename A>
inline void mul_run(const T* __restrict x, T* __restrict out, int64_t len,
                    const A* __restrict m) {
  for (int64_t t = 0; t < len; ++t) {
    out[t] = static_cast<T>(static_cast<A>(x[t]) * m[t]);
  }
}

// ... x[t] * m ...
template <typename T, typename A>
inline void scale_run(const T* __restrict x, T* __restrict out, int64_t len, A m) {
  for (int64_t t = 0; t < len; ++t) {
    out[t] = static_cast<T>(static_cast<A>(x[t]) * m);
  }
}

// ... x[t] * (dropped[t step] ? 0 : scale) ...
template <typename T, typename A>
inline void select_run(const T* __restrict x, T* __restrict out, int64_t len,
                       const uint8_t* __restrict dropped, int64_t step, A scale) {
  if (step == 1) {
    for (int64_t t = 0; t < len; ++t) {
      out[t] = static_cast<T>(static_cast<A>(x[t]) * (dropped[t] ? A(0) : scale));
    }
    return;
  }
  for (int64_t t = 0; t < len; ++t) {
    out[t] = static_cast<T>(static_cast<A>(x[t]) * (dropped[t * step] ? A(0) : scale));
  }
}

// ... and with noise x[t] * M + (dropped ? z : 0), M = 0 or 1 (two roundings in A; without z,
// the gradient's x[t] * M).
template <typename T, typename A>
inline void noise_run(const T* x, T* out, int64_t len, const uint8_t* dropped, int64_t step,
                      const A* z, int64_t z_step) {
  for (int64_t t = 0; t < len; ++t) {
    const bool drop = dropped[t * step] != 0;
    const A product = static_cast<A>(x[t]) * (drop ? A(0) : A(1));
    out[t] = static_cast<T>(z ? product + (drop ? z[t * z_step] : A(0)) : product);
  }
}

// -- the operator --------------------------------------------------------------------------------
constexpr const char* kOp = "dropkit::blocks";

template <typename F>
void dispatch_floating(at::ScalarType dtype, const F& f) {
  switch (dtype) {
    case at::kFloat:
      return f(float{});
    case at::kDouble:
      return f(double{});
    case at::kHalf:
      return f(c10::Half{});
    case at::kBFloat16:
      return f(c10::BFloat16{});
    default:
      TORCH_CHECK(false, kOp, ": x must be float16, bfloat16, float32 or float64, got ", dtype);
  }
}

// The scale of each sample, with the reference's operations in A (see the file's comment).
template <typename A>
std::vector<double> scales(const std::vector<int64_t>& dropped, int64_t n, int64_t c_seed,
                           int64_t plane, int64_t repeat, c10::string_view normalize,
                           double eps) {
  std::vector<double> out(static_cast<size_t>(n), 1.0);
  const auto scale = [&](int64_t total, int64_t count) {
    const A kept = static_cast<A>(total - count) * static_cast<A>(repeat);
    return static_cast<double>((A(1) / (static_cast<A>(eps) + kept)) *
                               static_cast<A>(total * repeat));
  };
  if (normalize == "sample") {
    for (int64_t i = 0; i < n; ++i) {
      int64_t count = 0;
      for (int64_t c = 0; c < c_seed; ++c) {
        count += dropped[i * c_seed + c];
      }
      out[i] = scale(c_seed * plane, count);
    }
  } else if (normalize == "batch") {
    int64_t count = 0;
    for (int64_t v : dropped) {
      count += v;
    }
    std::fill(out.begin(), out.end(), scale(n * c_seed * plane, count));
  }
  return out;
}

using NormalUniforms = std::tuple<at::Tensor, at::Tensor>(int64_t, const at::Tensor&, int64_t);

at::Tensor blocks_cpu(const at::Tensor& x, const at::Tensor& seed, int64_t offset, bool affine,
                      int64_t threshold, c10::IntArrayRef sizes, bool per_channel, bool clip,
                      c10::string_view normalize, double eps, bool noise) {
  TORCH_CHECK(x.dim() >= 3 && x.dim() <= 5, kOp,
              ": x must be (N, C, *S) with 1 to 3 spatial dimensions, got ", x.dim(), "D");
  const c10::IntArrayRef spatial = x.sizes().slice(2);
  bool fits = sizes.size() == spatial.size();
  for (size_t d = 0; fits && d < sizes.size(); ++d) {
    fits = 1 <= sizes[d] && sizes[d] <= spatial[d];
  }
  TORCH_CHECK(fits, kOp, ": sizes must hold one block side in [1, S_d] per spatial size S_d, got ",
              sizes, " for x of shape ", x.sizes());
  TORCH_CHECK(normalize == "sample" || normalize == "batch" || normalize == "none", kOp,
              ": normalize must be 'sample', 'batch' or 'none', got '", std::string(normalize),
              "'");
  const int64_t n = x.size(0), c = x.size(1), c_seed = per_channel ? c : 1;
  const Geometry g = geometry(spatial, sizes, clip);
  const int64_t planes = n * c_seed, words = planes * g.plane;
  TORCH_CHECK(offset >= 0 && offset <= INT64_MAX - words, kOp,
              ": offset must be >= 0 with offset + numel <= 2**63 - 1, got offset=", offset,
              " for numel=", words);
  TORCH_CHECK(threshold >= 0 && threshold <= (int64_t(1) << 32), kOp,
              ": threshold must be in [0, 2**32], got ", threshold);
  TORCH_CHECK(seed.numel() == 1 && seed.scalar_type() == at::kLong && seed.device().is_cpu(),
              kOp, ": seed must be a one-element int64 CPU tensor, got ", seed.scalar_type(),
              " of shape ", seed.sizes(), " on ", seed.device());
  const auto s64 = static_cast<uint64_t>(seed.item<int64_t>());
  const RoundKeys keys(static_cast<uint32_t>(s64), static_cast<uint32_t>(s64 >> 32));
  at::Tensor out = at::empty_like(x);
  dispatch_floating(x.scalar_type(), [](auto) {});
  if (x.numel() == 0) {
    return out;
  }
  std::unique_ptr<uint8_t[]> mask(new uint8_t[static_cast<size_t>(words)]);
  std::vector<int64_t> dropped(static_cast<size_t>(planes));
  block_mask(mask.get(), dropped.data(), planes, g, static_cast<uint64_t>(offset), keys,
             static_cast<uint64_t>(threshold));
  const int64_t plane = g.plane, repeat = per_channel ? 1 : c;
  const bool shift = noise && affine;
  const bool double_acc = x.scalar_type() == at::kDouble;
  const std::vector<double> scale =
      noise ? std::vector<double>(static_cast<size_t>(n), 1.0)
      : double_acc
          ? scales<double>(dropped, n, c_seed, plane, repeat, normalize, eps)
          : scales<float>(dropped, n, c_seed, plane, repeat, normalize, eps);
  at::Tensor z;  // the standard normals of x's logical elements, in A
  if (shift) {
    static const auto uniforms = c10::Dispatcher::singleton()
                                     .findSchemaOrThrow("dropkit::_normal_uniforms", "")
                                     .typed<NormalUniforms>();
    auto [u1, u2] = uniforms.call(x.numel(), seed, (offset + words + 1) / 2);
    z = at::sqrt(at::log(u1).mul(-2.0)).mul(at::cos(u2.mul(2.0 * M_PI)));
    z = z.to(double_acc ? at::kDouble : at::kFloat);
  }
  const uint8_t* mp = mask.get();
  const bool contiguous = x.is_contiguous();
  const bool channels_last =
      !contiguous && x.strides() == out.strides() &&
      ((x.dim() == 4 && x.is_contiguous(at::MemoryFormat::ChannelsLast)) ||
       (x.dim() == 5 && x.is_contiguous(at::MemoryFormat::ChannelsLast3d)));
  const at::Tensor xc = contiguous || channels_last ? x : x.contiguous();
  at::Tensor oc = contiguous || channels_last ? out : at::empty_like(xc);
  dispatch_floating(x.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    using A = typename Acc<T>::type;
    const T* xs = xc.const_data_ptr<T>();
    T* os = oc.mutable_data_ptr<T>();
    const A* zs = shift ? z.const_data_ptr<A>() : nullptr;
    if (noise) {  // rows (i, s) of C channels, or (i, c) of S elements
      if (channels_last) {
        for_rows(n, plane, c, [&](int64_t r, int64_t i, int64_t j) {
          noise_run<T, A>(xs + r * c, os + r * c, c, mp + i * c_seed * plane + j,
                          per_channel ? plane : 0, zs ? zs + i * c * plane + j : nullptr, plane);
        });
      } else {
        for_rows(n, c, plane, [&](int64_t r, int64_t i, int64_t j) {
          noise_run<T, A>(xs + r * plane, os + r * plane, plane,
                          mp + (i * c_seed + (per_channel ? j : 0)) * plane, 1,
                          zs ? zs + r * plane : nullptr, 1);
        });
      }
    } else if (per_channel) {  // the bytes of the mask, selected per element
      if (channels_last) {
        for_rows(n, plane, c, [&](int64_t r, int64_t i, int64_t j) {
          select_run<T, A>(xs + r * c, os + r * c, c, mp + i * c * plane + j, plane,
                           static_cast<A>(scale[i]));
        });
      } else {
        for_rows(n, c, plane, [&](int64_t r, int64_t i, int64_t) {
          select_run<T, A>(xs + r * plane, os + r * plane, plane, mp + r * plane, 1,
                           static_cast<A>(scale[i]));
        });
      }
    } else {  // one mask per sample: its multipliers, N S of them, then products
      std::vector<A> mult(static_cast<size_t>(n * plane));
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t e = i * plane; e < (i + 1) * plane; ++e) {
          mult[e] = mp[e] ? A(0) : static_cast<A>(scale[i]);
        }
      }
      const A* ms = mult.data();
      if (channels_last) {
        for_rows(n, plane, c, [&](int64_t r, int64_t, int64_t) {
          scale_run<T, A>(xs + r * c, os + r * c, c, ms[r]);
        });
      } else {
        for_rows(n, c, plane, [&](int64_t r, int64_t i, int64_t) {
          mul_run<T, A>(xs + r * plane, os + r * plane, plane, ms + i * plane);
        });
      }
    }
  });
  if (!(contiguous || channels_last)) {
    out.copy_(oc);
  }
  return out;
}

// -- autograd: the gradient is the op on the gradient without the shift (nothing saved but the
// seed and the scalars; double backward calls the op again) -------------------------------------
using BlocksSignature = at::Tensor(const at::Tensor&, const at::Tensor&, int64_t, bool, int64_t,
                                   c10::IntArrayRef, bool, bool, c10::string_view, double, bool);

const c10::TypedOperatorHandle<BlocksSignature>& blocks_op() {
  static const auto handle = c10::Dispatcher::singleton()
                                 .findSchemaOrThrow("dropkit::blocks", "")
                                 .typed<BlocksSignature>();
  return handle;
}

struct BlocksFunction : public torch::autograd::Function<BlocksFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& seed, int64_t offset, bool affine,
                            int64_t threshold, c10::IntArrayRef sizes, bool per_channel,
                            bool clip, c10::string_view normalize, double eps, bool noise) {
    auto& saved = ctx->saved_data;
    saved["seed"] = seed;
    saved["offset"] = offset;
    saved["threshold"] = threshold;
    saved["sizes"] = sizes.vec();
    saved["per_channel"] = per_channel;
    saved["clip"] = clip;
    saved["normalize"] = std::string(normalize);
    saved["eps"] = eps;
    saved["noise"] = noise;
    at::AutoDispatchBelowADInplaceOrView guard;
    return blocks_op().call(x, seed, offset, affine, threshold, sizes, per_channel, clip,
                            normalize, eps, noise);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto& saved = ctx->saved_data;
    const std::string normalize = saved["normalize"].toStringRef();
    at::Tensor grad = blocks_op().call(
        grads[0], saved["seed"].toTensor(), saved["offset"].toInt(), false,
        saved["threshold"].toInt(), saved["sizes"].toIntVector(), saved["per_channel"].toBool(),
        saved["clip"].toBool(), normalize, saved["eps"].toDouble(), saved["noise"].toBool());
    torch::autograd::variable_list result(11);
    result[0] = grad;
    return result;
  }
};

at::Tensor blocks_autograd(const at::Tensor& x, const at::Tensor& seed, int64_t offset,
                           bool affine, int64_t threshold, c10::IntArrayRef sizes,
                           bool per_channel, bool clip, c10::string_view normalize, double eps,
                           bool noise) {
  if (!(at::GradMode::is_enabled() && x.requires_grad())) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return blocks_op().call(x, seed, offset, affine, threshold, sizes, per_channel, clip,
                            normalize, eps, noise);
  }
  return BlocksFunction::apply(x, seed, offset, affine, threshold, sizes, per_channel, clip,
                               normalize, eps, noise);
}

}  // namespace

TORCH_LIBRARY_IMPL(dropkit, CPU, m) {
  m.impl("blocks", blocks_cpu);
}

TORCH_LIBRARY_IMPL(dropkit, Autograd, m) {
  m.impl("blocks", blocks_autograd);
}
