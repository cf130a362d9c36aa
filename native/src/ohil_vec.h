/* Internal vector and quaternion helpers (header-only, no state). */
#ifndef OHIL_VEC_H
#define OHIL_VEC_H

#include <math.h>

static inline int ohil_finite3(const double v[3])
{
    return isfinite(v[0]) && isfinite(v[1]) && isfinite(v[2]);
}

static inline double ohil_dot3(const double a[3], const double b[3])
{
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

static inline double ohil_norm3(const double v[3]) { return sqrt(ohil_dot3(v, v)); }

static inline void ohil_cross3(const double a[3], const double b[3], double out[3])
{
    double t0 = a[1] * b[2] - a[2] * b[1];
    double t1 = a[2] * b[0] - a[0] * b[2];
    double t2 = a[0] * b[1] - a[1] * b[0];
    out[0] = t0;
    out[1] = t1;
    out[2] = t2;
}

static inline void ohil_scale3(const double v[3], double k, double out[3])
{
    out[0] = v[0] * k;
    out[1] = v[1] * k;
    out[2] = v[2] * k;
}

static inline void ohil_copy3(const double v[3], double out[3])
{
    out[0] = v[0];
    out[1] = v[1];
    out[2] = v[2];
}

static inline void ohil_zero3(double v[3]) { v[0] = v[1] = v[2] = 0.0; }

static inline double ohil_clamp(double x, double lo, double hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

/* Hamilton product, scalar first. */
static inline void ohil_qmul(const double a[4], const double b[4], double out[4])
{
    double w = a[0] * b[0] - a[1] * b[1] - a[2] * b[2] - a[3] * b[3];
    double x = a[0] * b[1] + a[1] * b[0] + a[2] * b[3] - a[3] * b[2];
    double y = a[0] * b[2] - a[1] * b[3] + a[2] * b[0] + a[3] * b[1];
    double z = a[0] * b[3] + a[1] * b[2] - a[2] * b[1] + a[3] * b[0];
    out[0] = w;
    out[1] = x;
    out[2] = y;
    out[3] = z;
}

/* out = R(q) v = q (x) v (x) conj(q). */
static inline void ohil_qrot(const double q[4], const double v[3], double out[3])
{
    double t[3], u[3];
    double qv[3] = {q[1], q[2], q[3]};
    ohil_cross3(qv, v, t);
    t[0] *= 2.0;
    t[1] *= 2.0;
    t[2] *= 2.0;
    ohil_cross3(qv, t, u);
    out[0] = v[0] + q[0] * t[0] + u[0];
    out[1] = v[1] + q[0] * t[1] + u[1];
    out[2] = v[2] + q[0] * t[2] + u[2];
}

/* Normalizes q in place; returns 0 (and sets identity) if q is degenerate. */
static inline int ohil_qnormalize(double q[4])
{
    double n = sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
    if (!(n > 1e-300) || !isfinite(n)) {
        q[0] = 1.0;
        q[1] = q[2] = q[3] = 0.0;
        return 0;
    }
    const double inv = 1.0 / n;
    q[0] *= inv;
    q[1] *= inv;
    q[2] *= inv;
    q[3] *= inv;
    return 1;
}

/* Quaternion with R(q) = m (m[row][col], v_out = m v_in), Shepperd's method. */
/* (2-D array parameters are not const: C99 cannot pass double[3][3] as const.) */
static inline void ohil_q_from_dcm(double m[3][3], double q[4])
{
    double tr = m[0][0] + m[1][1] + m[2][2];
    if (tr > 0.0) {
        double s = sqrt(tr + 1.0) * 2.0;
        q[0] = 0.25 * s;
        q[1] = (m[2][1] - m[1][2]) / s;
        q[2] = (m[0][2] - m[2][0]) / s;
        q[3] = (m[1][0] - m[0][1]) / s;
    } else if (m[0][0] > m[1][1] && m[0][0] > m[2][2]) {
        double s = sqrt(1.0 + m[0][0] - m[1][1] - m[2][2]) * 2.0;
        q[0] = (m[2][1] - m[1][2]) / s;
        q[1] = 0.25 * s;
        q[2] = (m[0][1] + m[1][0]) / s;
        q[3] = (m[0][2] + m[2][0]) / s;
    } else if (m[1][1] > m[2][2]) {
        double s = sqrt(1.0 + m[1][1] - m[0][0] - m[2][2]) * 2.0;
        q[0] = (m[0][2] - m[2][0]) / s;
        q[1] = (m[0][1] + m[1][0]) / s;
        q[2] = 0.25 * s;
        q[3] = (m[1][2] + m[2][1]) / s;
    } else {
        double s = sqrt(1.0 + m[2][2] - m[0][0] - m[1][1]) * 2.0;
        q[0] = (m[1][0] - m[0][1]) / s;
        q[1] = (m[0][2] + m[2][0]) / s;
        q[2] = (m[1][2] + m[2][1]) / s;
        q[3] = 0.25 * s;
    }
    if (q[0] < 0.0) {
        q[0] = -q[0];
        q[1] = -q[1];
        q[2] = -q[2];
        q[3] = -q[3];
    }
    ohil_qnormalize(q);
}

/* Rotation whose body->ref DCM maps the body triad (rows b1,b2,b3 as
 * orthonormal columns) onto the reference triad: m = sum_k b_k r_k^T. */
static inline void ohil_dcm_from_triads(double b[3][3], double r[3][3], double m[3][3])
{
    for (int i = 0; i < 3; ++i) {
        for (int j = 0; j < 3; ++j) {
            m[i][j] = b[0][i] * r[0][j] + b[1][i] * r[1][j] + b[2][i] * r[2][j];
        }
    }
}

static inline int ohil_pos(double x) { return isfinite(x) && x > 0.0; }
static inline int ohil_nonneg(double x) { return isfinite(x) && x >= 0.0; }

#endif /* OHIL_VEC_H */
