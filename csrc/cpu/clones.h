// COLBERT_CPU_CLONES: compile a hot function three times and pick the copy for this CPU at load time (AVX-512,
// AVX2+FMA, or the baseline), on x86-64 Linux (glibc) with GCC >= 11 or Clang >= 14; elsewhere a plain function.
#pragma once

#if defined(__GNUC__) && defined(__x86_64__) && defined(__GLIBC__) && \
    ((defined(__clang__) && __clang_major__ >= 14) || (!defined(__clang__) && __GNUC__ >= 11))
#define COLBERT_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define COLBERT_CPU_CLONES
#endif
