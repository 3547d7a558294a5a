// Philox4x32-10 of dropkit.rng, shared by the C++ kernels (dropkit_ops.cpp, dropkit_blocks.cpp).
// Word k of counter c under seed s is word k of Philox4x32-10((c lo, c hi, 0, 0), (s lo, s hi)).
// Header-only, in an anonymous namespace: each library source gets its own inline copy.
#pragma once

#include <cstdint>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace {

constexpr uint32_t kM0 = 0xD2511F53u;
constexpr uint32_t kM1 = 0xCD9E8D57u;
constexpr uint32_t kW0 = 0x9E3779B9u;
constexpr uint32_t kW1 = 0xBB67AE85u;

// Round keys: key_r = key + r * W (mod 2**32), r = 0..9.
struct RoundKeys {
  uint32_t k0[10];
  uint32_t k1[10];
  RoundKeys(uint32_t key0, uint32_t key1) {
    for (int r = 0; r < 10; ++r) {
      k0[r] = key0;
      k1[r] = key1;
      key0 += kW0;
      key1 += kW1;
    }
  }
};

// Philox4x32-10 of one counter (lo, hi, 0, 0): the portable definition.
inline void philox_one(uint64_t counter, const RoundKeys& keys, uint32_t* w) {
  uint32_t a0 = static_cast<uint32_t>(counter), a1 = static_cast<uint32_t>(counter >> 32);
  uint32_t a2 = 0, a3 = 0;
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = static_cast<uint64_t>(a0) * kM0;
    const uint64_t p1 = static_cast<uint64_t>(a2) * kM1;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ a1 ^ keys.k0[r];
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ a3 ^ keys.k1[r];
    a1 = static_cast<uint32_t>(p1);
    a3 = static_cast<uint32_t>(p0);
    a0 = n0;
    a2 = n2;
  }
  w[0] = a0;
  w[1] = a1;
  w[2] = a2;
  w[3] = a3;
}

// words[4 g + k] = word k of Philox4x32-10(counter first + g, key), for g < groups.
//
// x86 with AVX-512F or AVX2: 8 (4) counters per register, one 32-bit word per 64-bit lane, so
// each 32x32->64 product is one vpmuludq (which reads the low half of each lane: the upper
// halves may hold garbage and are never masked inside the rounds). Compilers left alone emit the
// much slower 64x64 vpmullq here. Elsewhere: the portable loop above.
inline void philox_block(uint64_t first, int64_t groups, const RoundKeys& keys,
                         uint32_t* __restrict words) {
  int64_t g = 0;
#if defined(__AVX512F__)
  {
    const __m512i m0 = _mm512_set1_epi64(kM0);
    const __m512i m1 = _mm512_set1_epi64(kM1);
    const __m512i low = _mm512_set1_epi64(0xFFFFFFFFll);
    const __m512i iota = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i eight = _mm512_set1_epi64(8);
    const __m512i even = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0);
    const __m512i odd = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);
    // Two independent sets of 8 counters per step: the rounds are a dependency chain, and a
    // second chain keeps the multiplier busy while the first waits on its products.
    for (; g + 16 <= groups; g += 16) {
      const __m512i counter =
          _mm512_add_epi64(_mm512_set1_epi64(static_cast<long long>(first + g)), iota);
      const __m512i counter_b = _mm512_add_epi64(counter, eight);
      __m512i a0 = counter, a1 = _mm512_srli_epi64(counter, 32);
      __m512i b0 = counter_b, b1 = _mm512_srli_epi64(counter_b, 32);
      __m512i a2 = _mm512_setzero_si512(), a3 = _mm512_setzero_si512();
      __m512i b2 = a2, b3 = a2;
      for (int r = 0; r < 10; ++r) {
        const __m512i key0 = _mm512_set1_epi64(keys.k0[r]);
        const __m512i key1 = _mm512_set1_epi64(keys.k1[r]);
        const __m512i p0 = _mm512_mul_epu32(a0, m0);
        const __m512i p1 = _mm512_mul_epu32(a2, m1);
        const __m512i q0 = _mm512_mul_epu32(b0, m0);
        const __m512i q1 = _mm512_mul_epu32(b2, m1);
        a0 = _mm512_xor_si512(_mm512_xor_si512(_mm512_srli_epi64(p1, 32), a1), key0);
        a2 = _mm512_xor_si512(_mm512_xor_si512(_mm512_srli_epi64(p0, 32), a3), key1);
        b0 = _mm512_xor_si512(_mm512_xor_si512(_mm512_srli_epi64(q1, 32), b1), key0);
        b2 = _mm512_xor_si512(_mm512_xor_si512(_mm512_srli_epi64(q0, 32), b3), key1);
        a1 = p1;
        a3 = p0;
        b1 = q1;
        b3 = q0;
      }
      // Lanes (w0 | w1 << 32) and (w2 | w3 << 32) per counter, then the counters in order.
      __m512i t0 = _mm512_or_si512(_mm512_and_si512(a0, low), _mm512_slli_epi64(a1, 32));
      __m512i t1 = _mm512_or_si512(_mm512_and_si512(a2, low), _mm512_slli_epi64(a3, 32));
      __m512i u0 = _mm512_unpacklo_epi64(t0, t1);  // counters 0, 2, 4, 6
      __m512i u1 = _mm512_unpackhi_epi64(t0, t1);  // counters 1, 3, 5, 7
      _mm512_storeu_si512(words + 4 * g, _mm512_permutex2var_epi64(u0, even, u1));
      _mm512_storeu_si512(words + 4 * g + 16, _mm512_permutex2var_epi64(u0, odd, u1));
      t0 = _mm512_or_si512(_mm512_and_si512(b0, low), _mm512_slli_epi64(b1, 32));
      t1 = _mm512_or_si512(_mm512_and_si512(b2, low), _mm512_slli_epi64(b3, 32));
      u0 = _mm512_unpacklo_epi64(t0, t1);
      u1 = _mm512_unpackhi_epi64(t0, t1);
      _mm512_storeu_si512(words + 4 * g + 32, _mm512_permutex2var_epi64(u0, even, u1));
      _mm512_storeu_si512(words + 4 * g + 48, _mm512_permutex2var_epi64(u0, odd, u1));
    }
  }
#elif defined(__AVX2__)
  {
    const __m256i m0 = _mm256_set1_epi64x(kM0);
    const __m256i m1 = _mm256_set1_epi64x(kM1);
    const __m256i low = _mm256_set1_epi64x(0xFFFFFFFFll);
    const __m256i iota = _mm256_set_epi64x(3, 2, 1, 0);
    for (; g + 4 <= groups; g += 4) {
      const __m256i counter =
          _mm256_add_epi64(_mm256_set1_epi64x(static_cast<long long>(first + g)), iota);
      __m256i a0 = counter, a1 = _mm256_srli_epi64(counter, 32);
      __m256i a2 = _mm256_setzero_si256(), a3 = _mm256_setzero_si256();
      for (int r = 0; r < 10; ++r) {
        const __m256i p0 = _mm256_mul_epu32(a0, m0);
        const __m256i p1 = _mm256_mul_epu32(a2, m1);
        const __m256i n0 = _mm256_xor_si256(
            _mm256_xor_si256(_mm256_srli_epi64(p1, 32), a1), _mm256_set1_epi64x(keys.k0[r]));
        const __m256i n2 = _mm256_xor_si256(
            _mm256_xor_si256(_mm256_srli_epi64(p0, 32), a3), _mm256_set1_epi64x(keys.k1[r]));
        a1 = p1;
        a3 = p0;
        a0 = n0;
        a2 = n2;
      }
      const __m256i t0 = _mm256_or_si256(_mm256_and_si256(a0, low), _mm256_slli_epi64(a1, 32));
      const __m256i t1 = _mm256_or_si256(_mm256_and_si256(a2, low), _mm256_slli_epi64(a3, 32));
      const __m256i u0 = _mm256_unpacklo_epi64(t0, t1);  // counters 0, 2
      const __m256i u1 = _mm256_unpackhi_epi64(t0, t1);  // counters 1, 3
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(words + 4 * g),
                          _mm256_permute2x128_si256(u0, u1, 0x20));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(words + 4 * g + 8),
                          _mm256_permute2x128_si256(u0, u1, 0x31));
    }
  }
#endif
  for (; g < groups; ++g) {
    philox_one(first + static_cast<uint64_t>(g), keys, words + 4 * g);
  }
}

}  // namespace
