/* W1 by hand: the roofline kiln's fused kernel is measured against (WORKLOADS.md, BASELINES.md).
 *
 *   y = x² eˣ,  g = (2x + x²) eˣ   over the float32 x of `x.npy`, 2 threads (OpenMP),
 *
 * timed into buffers reused across calls and into fresh ones each call (first-touch page faults).
 * Compiled and run by kiln-bench (`machine.rs`): cc -O3 -march=native -ffast-math -fopenmp, so
 * expf is glibc's vectorised libmvec. Prints one JSON line; the harness checks `max_rel_err`.
 * Usage: w1_roofline X.npy REPS
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void kernel(const float *restrict x, float *restrict y, float *restrict g, long n) {
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++) {
        float v = x[i], e = expf(v);
        y[i] = v * v * e;
        g[i] = (2.0f * v + v * v) * e;
    }
}

static int cmp(const void *a, const void *b) {
    double d = *(const double *)a - *(const double *)b;
    return (d > 0) - (d < 0);
}

/* A little-endian float32 .npy file (format 1.0 or 2.0, C order). */
static float *read_npy(const char *path, long *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char head[12];
    if (fread(head, 1, 10, f) != 10 || memcmp(head, "\x93NUMPY", 6) != 0) return NULL;
    long hlen = head[8] | (head[9] << 8);
    if (head[6] >= 2) {
        if (fread(head + 10, 1, 2, f) != 2) return NULL;
        hlen |= ((long)head[10] << 16) | ((long)head[11] << 24);
    }
    char *h = malloc(hlen + 1);
    if (fread(h, 1, hlen, f) != (size_t)hlen) return NULL;
    h[hlen] = 0;
    if (!strstr(h, "'<f4'") || strstr(h, "'fortran_order': True")) return NULL;
    long start = ftell(f);
    fseek(f, 0, SEEK_END);
    *n = (ftell(f) - start) / 4;
    fseek(f, start, SEEK_SET);
    float *x = aligned_alloc(64, ((*n * 4 + 63) / 64) * 64);
    if (fread(x, 4, *n, f) != (size_t)*n) return NULL;
    fclose(f);
    free(h);
    return x;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: w1_roofline X.npy REPS\n");
        return 2;
    }
    long n;
    float *x = read_npy(argv[1], &n);
    if (!x) {
        fprintf(stderr, "cannot read %s as a float32 .npy\n", argv[1]);
        return 2;
    }
    int reps = atoi(argv[2]);
    if (reps < 1) reps = 1;
    double *reused = malloc(sizeof(double) * reps), *fresh = malloc(sizeof(double) * reps);
    size_t bytes = ((n * 4 + 63) / 64) * 64;
    float *y = aligned_alloc(64, bytes), *g = aligned_alloc(64, bytes);
    kernel(x, y, g, n); /* warm-up: maps the reused buffers */
    for (int r = 0; r < reps; r++) {
        double t = now();
        kernel(x, y, g, n);
        reused[r] = now() - t;
    }
    double err = 0;
    for (long i = 0; i < n; i += 997) {
        double v = x[i], e = exp(v), ry = v * v * e, rg = (2 * v + v * v) * e;
        double s = fabs(ry) > 1e-30 ? fabs(ry) : 1e-30, t = fabs(rg) > 1e-30 ? fabs(rg) : 1e-30;
        double a = fabs(y[i] - ry) / s, b = fabs(g[i] - rg) / t;
        if (a > err) err = a;
        if (b > err) err = b;
    }
    for (int r = 0; r < reps; r++) {
        float *fy = malloc(bytes), *fg = malloc(bytes); /* large: fresh mmap'd pages each call */
        double t = now();
        kernel(x, fy, fg, n);
        fresh[r] = now() - t;
        free(fy);
        free(fg);
    }
    qsort(reused, reps, sizeof(double), cmp);
    qsort(fresh, reps, sizeof(double), cmp);
    printf("{\"n\": %ld, \"reps\": %d, \"reused_median_s\": %.9f, \"reused_min_s\": %.9f, "
           "\"fresh_median_s\": %.9f, \"fresh_min_s\": %.9f, \"max_rel_err\": %.3e}\n",
           n, reps, reused[reps / 2], reused[0], fresh[reps / 2], fresh[0], err);
    return 0;
}
