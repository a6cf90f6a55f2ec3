/* test_attention_tiled_host.cpp — the tiled CUDA attention algorithm
 * (kernels/cuda/attention_tiled.cuh) run on the host, against the CPU
 * table's attention forward and backward.
 *
 * The header writes each kernel as phases separated by barriers; here an
 * executor runs every phase once per "thread" of the block in a loop, so the
 * exact tile loops, online softmax, backward recurrences and index arithmetic
 * that the GPU runs are checked on every CI machine, none of which has a GPU
 * (the GPU itself runs them in tools/gpu-check.sh). Every case runs twice,
 * the second time with each phase's threads in reverse order, which catches
 * a thread reading what another thread writes in the same phase. Phases start
 * from NaN-filled registers and shared memory, so a read of something never
 * written shows. Cases: the shapes of the model (causal GQA decode, SAM
 * windows with relative positions and bias, packed qkv strides, cross
 * attention), tile edges (1, 37, 130 tokens), every padded head dim, fully
 * masked rows, NULL gradients, and 60 random descriptors. Gradients start
 * from random values (backward adds). Tolerance: max abs error <= 2e-5 of
 * max(|reference|, 1). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>
#include <algorithm>
#include <random>
#include <pathseg/kernels.h>
#define ATT_HD inline
inline float ps_ld(float x) { return x; }
template <typename T> T ps_st(float x);
template <> inline float ps_st<float>(float x) { return x; }
inline void ps_acc(float *y, float v) { *y = *y + v; }
inline void att_atomic_add(float *p, float v) { *p += v; }
#include "attention_tiled.cuh"
using namespace att;

static bool REV = false;
template <class S> struct hx {
  std::vector<S> s;
  hx() : s(NT) { for (auto &x : s) memset(&x, 0xff, sizeof x); }  // NaN garbage
  template <class F> void phase(F f) {
    if (!REV) for (int t = 0; t < NT; t++) f(t, s[t]);
    else for (int t = NT - 1; t >= 0; t--) f(t, s[t]);
  }
};
static int padded_dim(int64_t D) {
  static const int dps[] = {16, 32, 48, 64, 80, 128};
  for (int dp : dps) if (D >= 1 && D <= dp) return dp;
  return 0;
}
template <int DP> void fwd(args<float> &a) {
  const ps_attention_desc &d = a.d;
  for (int64_t b = 0; b < d.B; b++) for (int64_t h = 0; h < d.Hq; h++)
    for (int64_t qt = 0; qt < (d.Tq + BQ - 1) / BQ; qt++) {
      std::vector<float> sm(fwd_smem_floats<DP>(), NAN);
      hx<fwd_regs<DP>> x;
      fwd_block<float, DP>(x, a, qt, h, b, sm.data());
    }
}
template <int DP> void bwd(args<float> &a) {
  const ps_attention_desc &d = a.d;
  if (a.dk || a.dv)
    for (int64_t b = 0; b < d.B; b++) for (int64_t g = 0; g < d.Hkv; g++)
      for (int64_t kt = 0; kt < (d.Tk + BK - 1) / BK; kt++) {
        std::vector<float> sm(dkv_smem_floats<DP>(), NAN);
        hx<dkv_regs<DP>> x;
        dkv_block<float, DP>(x, a, kt, g, b, sm.data());
      }
  int64_t relf = a.rel_smem ? (int64_t)BQ * (d.rel_kh + d.rel_kw) : 0;
  if (a.dq || a.dbias || (d.rel_h && (a.drel_h || a.drel_w)))
    for (int64_t b = 0; b < d.B; b++) for (int64_t h = 0; h < d.Hq; h++)
      for (int64_t qt = 0; qt < (d.Tq + BQ - 1) / BQ; qt++) {
        std::vector<float> sm(dq_smem_floats<DP>(relf), NAN);
        hx<dq_regs<DP>> x;
        dq_block<float, DP>(x, a, qt, h, b, sm.data());
      }
}
#define DISPATCH(fn, a) switch (padded_dim(a.d.D)) { case 16: fn<16>(a); break; case 32: fn<32>(a); break; \
  case 48: fn<48>(a); break; case 64: fn<64>(a); break; case 80: fn<80>(a); break; case 128: fn<128>(a); break; default: abort(); }

static std::mt19937 rng(1234);
static std::vector<float> rnd(int64_t n, float s = 1.0f) {
  std::uniform_real_distribution<float> u(-s, s);
  std::vector<float> v(n > 0 ? n : 1);
  for (auto &x : v) x = u(rng);
  return v;
}
static double maxerr(const std::vector<float> &a, const std::vector<float> &b, double *ref) {
  double e = 0, m = 0;
  for (size_t i = 0; i < a.size(); i++) {
    if (isinf(a[i]) || isinf(b[i])) { if (a[i] != b[i]) e = INFINITY; continue; }
    if (isnan(a[i]) || isnan(b[i])) { e = NAN; continue; }
    e = fmax(e, fabs(a[i] - b[i])); m = fmax(m, fabs(b[i]));
  }
  *ref = m;
  return e;
}
static int fails = 0;
static double worst = 0;
static void report(const char *tag, const char *what, const std::vector<float> &g, const std::vector<float> &c) {
  double m, e = maxerr(g, c, &m);
  double rel = e / (m > 1 ? m : 1);
  bool ok = rel <= 2e-5;
  if (!(rel <= worst)) worst = rel > worst ? rel : worst;
  if (!ok) fails++;
  if (!ok) printf("  FAIL %-34s %-7s maxabs %.2e (ref max %.2e)\n", tag, what, e, m);
}

// bias: 0 none, 1 shared (Tq,Tk) with -inf entries + a whole masked row, 2 per (b,h) strides
// nulls: 1 = dq NULL, 2 = dk,dv NULL, 4 = drel_w NULL
static void run_case(const char *tag, ps_attention_desc d, int bias, int rel, int nulls, int rel_smem) {
  const ps_kernels *C = ps_kernels_get(PS_DEVICE_CPU, NULL);
  int64_t ldq = d.ldq ? d.ldq : d.Hq * d.D, ldk = d.ldk ? d.ldk : d.Hkv * d.D;
  int64_t ldv = d.ldv ? d.ldv : d.Hkv * d.D, ldo = d.ldo ? d.ldo : d.Hq * d.D;
  auto q = rnd(d.B * d.Tq * ldq), k = rnd(d.B * d.Tk * ldk), v = rnd(d.B * d.Tk * ldv), dout = rnd(d.B * d.Tq * ldo);
  int64_t nb = bias == 1 ? d.Tq * d.Tk : bias == 2 ? d.B * d.Hq * d.Tq * d.Tk : 1;
  auto bb = rnd(nb);
  if (bias)
    for (int64_t i = 0; i < nb; i++)
      if (i % 7 == 3 || (i / d.Tk) % d.Tq == 1) bb[i] = -INFINITY;
  int64_t g = rel ? d.rel_kh : 1, g2 = rel ? d.rel_kw : 1;
  auto rh = rnd(d.B * d.Hq * d.Tq * g), rw = rnd(d.B * d.Hq * d.Tq * g2);
  ps_attention_desc dd = d;
  if (bias) dd.bias = bb.data(), dd.bias_sb = bias == 2 ? d.Hq * d.Tq * d.Tk : 0, dd.bias_sh = bias == 2 ? d.Tq * d.Tk : 0;
  if (rel) dd.rel_h = rh.data(), dd.rel_w = rw.data();
  int64_t sf = std::max(C->attention_scratch(&dd, 1), C->attention_scratch(&dd, 0));
  std::vector<float> scr(sf > 0 ? sf : 1);
  std::vector<float> out_c(d.B * d.Tq * ldo, 0.5f), lse_c(d.B * d.Hq * d.Tq), out_g(out_c), lse_g(lse_c);
  C->attention_forward(out_c.data(), lse_c.data(), q.data(), k.data(), v.data(), &dd, scr.data(), sf);
  for (int pass = 0; pass < 2; pass++) {
    REV = pass == 1;
    char t2[96]; snprintf(t2, sizeof t2, "%s%s", tag, REV ? " [rev]" : "");
    args<float> a; memset(&a, 0, sizeof a);
    a.d = dd; a.ldq = ldq; a.ldk = ldk; a.ldv = ldv; a.ldo = ldo; a.rep = d.Hq / d.Hkv;
    a.out = out_g.data(); a.lse = lse_g.data(); a.q = q.data(); a.k = k.data(); a.v = v.data();
    std::fill(out_g.begin(), out_g.end(), 0.5f);  // untouched padding columns stay
    DISPATCH(fwd, a);
    report(t2, "out", out_g, out_c); report(t2, "lse", lse_g, lse_c);
    // lse NULL
    args<float> a2 = a; std::vector<float> out2(out_c.size(), 0.5f); a2.out = out2.data(); a2.lse = NULL;
    DISPATCH(fwd, a2);
    report(t2, "out(nolse)", out2, out_c);
    // backward from CPU forward; gradients start nonzero (+=)
    auto dq0 = rnd(q.size()), dk0 = rnd(k.size()), dv0 = rnd(v.size()), db0 = rnd(nb), drh0 = rnd(rh.size()), drw0 = rnd(rw.size());
    auto dq_c = dq0, dk_c = dk0, dv_c = dv0, db_c = db0, drh_c = drh0, drw_c = drw0;
    auto dq_g = dq0, dk_g = dk0, dv_g = dv0, db_g = db0, drh_g = drh0, drw_g = drw0;
    float *P_dq = (nulls & 1) ? NULL : dq_c.data(), *P_dk = (nulls & 2) ? NULL : dk_c.data(), *P_dv = (nulls & 2) ? NULL : dv_c.data();
    C->attention_backward(P_dq, P_dk, P_dv, bias ? db_c.data() : NULL, rel ? drh_c.data() : NULL,
                          rel && !(nulls & 4) ? drw_c.data() : NULL, dout.data(), q.data(), k.data(), v.data(),
                          out_c.data(), lse_c.data(), &dd, scr.data(), sf);
    args<float> b = a;
    b.out = NULL; b.lse = lse_c.data(); b.o = out_c.data(); b.dout = dout.data();
    b.dq = (nulls & 1) ? NULL : dq_g.data(); b.dk = (nulls & 2) ? NULL : dk_g.data(); b.dv = (nulls & 2) ? NULL : dv_g.data();
    b.dbias = bias ? db_g.data() : NULL; b.drel_h = rel ? drh_g.data() : NULL; b.drel_w = rel && !(nulls & 4) ? drw_g.data() : NULL;
    b.rel_smem = rel_smem;
    DISPATCH(bwd, b);
    report(t2, "dq", dq_g, dq_c); report(t2, "dk", dk_g, dk_c); report(t2, "dv", dv_g, dv_c);
    if (bias) report(t2, "dbias", db_g, db_c);
    if (rel) { report(t2, "drel_h", drh_g, drh_c); report(t2, "drel_w", drw_g, drw_c); }
  }
}

int main() {
  ps_attention_desc d;
  d = ps_attention_desc{.B = 2, .Hq = 4, .Hkv = 2, .Tq = 33, .Tk = 33, .D = 32, .scale = 0.17677669f, .causal = 1};
  run_case("causal-gqa", d, 0, 0, 0, 1);
  d = ps_attention_desc{.B = 2, .Hq = 3, .Hkv = 3, .Tq = 9, .Tk = 41, .D = 40, .scale = 0.3f};
  run_case("cross+bias", d, 1, 0, 0, 1);
  d = ps_attention_desc{.B = 3, .Hq = 2, .Hkv = 2, .Tq = 49, .Tk = 49, .D = 16,
                          .ldq = 3 * 2 * 16, .ldk = 3 * 2 * 16, .ldv = 3 * 2 * 16, .scale = 0.25f, .rel_kh = 7, .rel_kw = 7};
  run_case("packed+relpos", d, 0, 1, 0, 1);
  run_case("packed+relpos gatomic", d, 0, 1, 0, 0);
  d = ps_attention_desc{.B = 2, .Hq = 6, .Hkv = 2, .Tq = 1, .Tk = 130, .D = 64, .scale = 0.125f, .causal = 1};
  run_case("decode Tq=1 Tk=130 causal gqa", d, 0, 0, 0, 1);
  d = ps_attention_desc{.B = 1, .Hq = 2, .Hkv = 1, .Tq = 37, .Tk = 130, .D = 80, .scale = 0.11f, .causal = 1};
  run_case("causal Tq=37 Tk=130 D80", d, 0, 0, 0, 1);
  d = ps_attention_desc{.B = 2, .Hq = 2, .Hkv = 2, .Tq = 130, .Tk = 37, .D = 16, .scale = 0.25f, .causal = 1};
  run_case("causal Tq=130>Tk=37 (masked rows)", d, 0, 0, 0, 1);
  d = ps_attention_desc{.B = 2, .Hq = 2, .Hkv = 1, .Tq = 130, .Tk = 37, .D = 128, .scale = 0.09f};
  run_case("cross Tq=130 Tk=37 D128 bias/bh", d, 2, 0, 1, 1);
  d = ps_attention_desc{.B = 1, .Hq = 3, .Hkv = 3, .Tq = 1, .Tk = 1, .D = 8, .scale = 0.3f};
  run_case("1x1 D8", d, 0, 0, 2, 1);
  d = ps_attention_desc{.B = 2, .Hq = 2, .Hkv = 2, .Tq = 196, .Tk = 196, .D = 64,
                          .ldq = 3 * 2 * 64, .ldk = 3 * 2 * 64, .ldv = 3 * 2 * 64, .scale = 0.125f, .rel_kh = 14, .rel_kw = 14};
  run_case("window 196 relpos+bias dkdv NULL", d, 1, 1, 2 | 4, 1);
  d = ps_attention_desc{.B = 1, .Hq = 2, .Hkv = 2, .Tq = 65, .Tk = 256, .D = 100, .scale = 0.1f, .rel_kh = 16, .rel_kw = 16};
  run_case("cross Tq65 Tk256 rel16 D100", d, 0, 1, 0, 1);
  std::mt19937 fr(99);
  auto ri = [&](int lo, int hi) { return (int)std::uniform_int_distribution<int>(lo, hi)(fr); };
  for (int it = 0; it < 60; it++) {
    ps_attention_desc e; memset(&e, 0, sizeof e);
    e.B = ri(1, 2); e.Hkv = ri(1, 2); e.Hq = e.Hkv * ri(1, 3); e.Tq = ri(1, 150);
    int rel = ri(0, 3) == 0, bias = ri(0, 2);
    if (rel) { e.rel_kh = ri(1, 12); e.rel_kw = ri(1, 12); e.Tk = e.rel_kh * e.rel_kw; }
    else e.Tk = ri(1, 150);
    static const int Ds[] = {3, 16, 24, 32, 40, 64, 77, 80, 96, 128};
    e.D = Ds[ri(0, 9)];
    e.scale = 1.0f / sqrtf((float)e.D);
    e.causal = ri(0, 1);
    if (ri(0, 1)) { e.ldq = e.Hq * e.D + ri(1, 9); e.ldk = e.Hkv * e.D + ri(0, 9); e.ldv = e.Hkv * e.D + ri(0, 5); e.ldo = e.Hq * e.D + ri(0, 3); }
    char tag[128];
    snprintf(tag, sizeof tag, "fz%d B%ld H%ld/%ld %ldx%ld D%ld c%d b%d r%d", it, (long)e.B, (long)e.Hq, (long)e.Hkv, (long)e.Tq, (long)e.Tk, (long)e.D, e.causal, bias, rel);
    run_case(tag, e, bias, rel, ri(0, 7), ri(0, 1));
  }
  printf("test_attention_tiled_host: %d failed, worst error %.2e of max(|ref|, 1)\n", fails, worst);
  return fails != 0;
}
