/* ADCS: complementary-filter attitude determination, B-dot detumble,
 * quaternion/vector feedback on reaction wheels, cross-product unloading.
 * See ohil_adcs.h for conventions. No heap, no statics. */
#include <math.h>
#include <string.h>

#include "ohil_adcs.h"
#include "ohil_vec.h"

/* Plausibility bounds on sensor magnitudes (well beyond anything physical
 * for the spacecraft); a reading outside them is treated like a NaN. */
#define OHIL_ADCS_MAX_RATE_RAD_S 100.0
#define OHIL_ADCS_MAX_FIELD_T 1e-3
#define OHIL_ADCS_MAX_POS_M 1e9
#define OHIL_ADCS_MAX_VEL_M_S 1e5

static int bounded3(const double v[3], double lim)
{
    return ohil_finite3(v) && fabs(v[0]) <= lim && fabs(v[1]) <= lim && fabs(v[2]) <= lim;
}

static int unit3(const double v[3], double tol)
{
    return ohil_finite3(v) && fabs(ohil_norm3(v) - 1.0) <= tol;
}

int ohil_adcs_init(const ohil_adcs_cfg *c)
{
    if (c == NULL) return OHIL_ADCS_E_NULL;
    for (int i = 0; i < 3; ++i) {
        if (!ohil_pos(c->inertia_kgm2[i])) return OHIL_ADCS_E_INERTIA;
    }
    if (!ohil_pos(c->wheel_inertia_kgm2)) return OHIL_ADCS_E_WHEEL_INERTIA;
    if (!ohil_pos(c->wheel_max_torque_nm)) return OHIL_ADCS_E_WHEEL_MAX_TORQUE;
    if (!ohil_pos(c->wheel_max_speed_rad_s)) return OHIL_ADCS_E_WHEEL_MAX_SPEED;
    if (!ohil_pos(c->dipole_max_am2)) return OHIL_ADCS_E_DIPOLE_MAX;
    if (!ohil_pos(c->bdot_gain)) return OHIL_ADCS_E_BDOT_GAIN;
    if (!ohil_pos(c->att_wn_rad_s)) return OHIL_ADCS_E_ATT_WN;
    if (!ohil_pos(c->att_zeta)) return OHIL_ADCS_E_ATT_ZETA;
    if (!ohil_pos(c->max_slew_rate_rad_s)) return OHIL_ADCS_E_MAX_SLEW_RATE;
    if (!ohil_nonneg(c->unload_gain_per_s)) return OHIL_ADCS_E_UNLOAD_GAIN;
    if (!unit3(c->array_normal_body, 1e-6)) return OHIL_ADCS_E_ARRAY_NORMAL;
    if (!unit3(c->search_axis_body, 1e-6) ||
        fabs(ohil_dot3(c->search_axis_body, c->array_normal_body)) > 1e-6) {
        return OHIL_ADCS_E_SEARCH_AXIS;
    }
    if (!ohil_pos(c->search_rate_rad_s) || c->search_rate_rad_s > c->max_slew_rate_rad_s) {
        return OHIL_ADCS_E_SEARCH_RATE;
    }
    if (!ohil_nonneg(c->k_sun)) return OHIL_ADCS_E_K_SUN;
    if (!ohil_nonneg(c->k_mag)) return OHIL_ADCS_E_K_MAG;
    if (!ohil_nonneg(c->k_bias)) return OHIL_ADCS_E_K_BIAS;
    if (!ohil_pos(c->max_bias_rad_s)) return OHIL_ADCS_E_MAX_BIAS;
    if (!ohil_pos(c->max_dt_s)) return OHIL_ADCS_E_MAX_DT;
    if (!ohil_nonneg(c->att_hold_s)) return OHIL_ADCS_E_ATT_HOLD;
    return 0;
}

void ohil_adcs_reset(const ohil_adcs_cfg *cfg, ohil_adcs_state *st)
{
    (void)cfg;
    memset(st, 0, sizeof(*st));
    st->q_bi[0] = 1.0;
    st->time_since_sun_s = INFINITY;
}

/* q <- exp(-w dt / 2) (x) q : exact propagation for a constant body rate.
 * Below a half-angle of 1e-2 rad the Taylor series of cos and sin(x)/x to x^6
 * is used: its truncation error is below 3e-17, and it skips sin/cos. */
static void propagate(double q[4], const double w[3], double dt)
{
    const double wn2 = ohil_dot3(w, w);
    const double h2 = 0.25 * wn2 * dt * dt; /* half-angle squared */
    double c, k;                            /* cos(half), -sin(half)/|w| */
    if (h2 < 1e-4) {
        c = 1.0 - h2 * (0.5 - h2 * (1.0 / 24.0 - h2 * (1.0 / 720.0)));
        k = -0.5 * dt * (1.0 - h2 * (1.0 / 6.0 - h2 * (1.0 / 120.0 - h2 * (1.0 / 5040.0))));
    } else {
        const double wn = sqrt(wn2), half = 0.5 * wn * dt;
        c = cos(half);
        k = -sin(half) / wn;
    }
    const double dq[4] = {c, w[0] * k, w[1] * k, w[2] * k};
    double out[4];
    ohil_qmul(dq, q, out);
    memcpy(q, out, sizeof(out));
    ohil_qnormalize(q);
}

/* TRIAD from the sun (primary) and field directions; returns 0 if degenerate. */
static int triad(const double s_b[3], const double m_b[3], const double s_i[3],
                 const double m_i[3], double q[4])
{
    double tb[3][3], ti[3][3], m[3][3];
    ohil_copy3(s_b, tb[0]);
    ohil_copy3(s_i, ti[0]);
    ohil_cross3(s_b, m_b, tb[1]);
    ohil_cross3(s_i, m_i, ti[1]);
    double nb = ohil_norm3(tb[1]), ni = ohil_norm3(ti[1]);
    if (nb < 0.05 || ni < 0.05) return 0; /* vectors within ~3 deg of parallel */
    ohil_scale3(tb[1], 1.0 / nb, tb[1]);
    ohil_scale3(ti[1], 1.0 / ni, ti[1]);
    ohil_cross3(tb[0], tb[1], tb[2]);
    ohil_cross3(ti[0], ti[1], ti[2]);
    ohil_dcm_from_triads(tb, ti, m);
    ohil_q_from_dcm(m, q);
    return 1;
}

/* Scales v so that max |v_i| <= lim; returns 1 if it had to. */
static int sat_vec(double v[3], double lim)
{
    double m = fmax(fabs(v[0]), fmax(fabs(v[1]), fabs(v[2])));
    if (m > lim) {
        ohil_scale3(v, lim / m, v);
        for (int i = 0; i < 3; ++i) v[i] = ohil_clamp(v[i], -lim, lim); /* rounding */
        return 1;
    }
    return 0;
}

/* Saturates the magnitude of v to lim. */
static void sat_norm(double v[3], double lim)
{
    double n = ohil_norm3(v);
    if (n > lim) ohil_scale3(v, lim / n, v);
}

/* Angle from the array normal n to the sun s, and the unit rotation axis. */
static double sun_error(const ohil_adcs_cfg *c, const double s[3], double axis[3])
{
    const double *n = c->array_normal_body;
    double x[3];
    ohil_cross3(n, s, x);
    double sn = ohil_norm3(x);
    double cs = ohil_dot3(n, s);
    double ang = atan2(sn, cs);
    if (sn > 1e-9) {
        ohil_scale3(x, 1.0 / sn, axis);
    } else if (cs < 0.0) {
        ohil_copy3(c->search_axis_body, axis);
    } else {
        ohil_zero3(axis);
    }
    return ang;
}

/* LVLH reference: z to nadir, y to minus orbit normal, x completes (along track).
 * Returns 0 if r, v are degenerate. w_ref gets the LVLH rate in LVLH axes. */
static int lvlh(const double r[3], const double v[3], double q_ri[4], double w_ref[3])
{
    double h[3], e[3][3];
    if (!ohil_finite3(r) || !ohil_finite3(v)) return 0;
    double rn = ohil_norm3(r);
    ohil_cross3(r, v, h);
    double hn = ohil_norm3(h);
    if (!(rn > 1.0) || !(hn > 1e-9 * rn)) return 0;
    ohil_scale3(r, -1.0 / rn, e[2]);
    ohil_scale3(h, -1.0 / hn, e[1]);
    ohil_cross3(e[1], e[2], e[0]);
    /* v_ref = e v_eci: the rows of e are the LVLH axes in ECI */
    ohil_q_from_dcm(e, q_ri);
    w_ref[0] = 0.0;
    w_ref[1] = -hn / (rn * rn);
    w_ref[2] = 0.0;
    return 1;
}

void ohil_adcs_step(const ohil_adcs_cfg *c, ohil_adcs_state *st, const ohil_adcs_in *in,
                    ohil_adcs_out *out)
{
    uint32_t f = 0;
    int mode = in->mode;
    if (mode != OHIL_ADCS_MODE_DETUMBLE && mode != OHIL_ADCS_MODE_SUN_POINT &&
        mode != OHIL_ADCS_MODE_NADIR_POINT) {
        f |= OHIL_ADCS_F_MODE;
        mode = OHIL_ADCS_MODE_DETUMBLE;
    }
    const double dt = in->dt_s;
    const int dt_ok = isfinite(dt) && dt > 0.0 && dt <= c->max_dt_s;
    if (!dt_ok) f |= OHIL_ADCS_F_DT;

    const int gyro_ok = bounded3(in->rate_rad_s, OHIL_ADCS_MAX_RATE_RAD_S);
    if (!gyro_ok) f |= OHIL_ADCS_F_GYRO;

    double b_b[3] = {0.0, 0.0, 0.0}, bhat_b[3] = {0.0, 0.0, 0.0};
    double bn = 0.0;
    int mag_ok = bounded3(in->b_body_t, OHIL_ADCS_MAX_FIELD_T);
    if (mag_ok) {
        ohil_copy3(in->b_body_t, b_b);
        bn = ohil_norm3(b_b);
        mag_ok = bn > 1e-12;
    }
    if (mag_ok) {
        ohil_scale3(b_b, 1.0 / bn, bhat_b);
    } else {
        f |= OHIL_ADCS_F_MAG;
    }

    double s_b[3] = {0.0, 0.0, 0.0};
    int sun_ok = 0;
    if (in->sun_valid) {
        if (unit3(in->sun_body, 0.1)) {
            ohil_scale3(in->sun_body, 1.0 / ohil_norm3(in->sun_body), s_b);
            sun_ok = 1;
        } else {
            f |= OHIL_ADCS_F_SUN;
        }
    }

    /* references: non-finite is a fault, zero just means "not available" */
    int sref_ok = 0, bref_ok = 0;
    double s_i[3] = {0.0, 0.0, 0.0}, bhat_i[3] = {0.0, 0.0, 0.0};
    const int bref_in = bounded3(in->b_eci_t, OHIL_ADCS_MAX_FIELD_T);
    const int orbit_in = bounded3(in->r_eci_m, OHIL_ADCS_MAX_POS_M) &&
                         bounded3(in->v_eci_m_s, OHIL_ADCS_MAX_VEL_M_S);
    if (unit3(in->sun_eci, 0.1)) {
        ohil_scale3(in->sun_eci, 1.0 / ohil_norm3(in->sun_eci), s_i);
        sref_ok = 1;
    }
    const int sref_absent = in->sun_eci[0] == 0.0 && in->sun_eci[1] == 0.0 && in->sun_eci[2] == 0.0;
    if ((!sref_ok && !sref_absent) || !bref_in || !orbit_in) f |= OHIL_ADCS_F_REF;
    if (bref_in) {
        double n = ohil_norm3(in->b_eci_t);
        if (n > 1e-12) {
            ohil_scale3(in->b_eci_t, 1.0 / n, bhat_i);
            bref_ok = 1;
        }
    }
    const int wheel_ok = bounded3(in->wheel_speed_rad_s, 10.0 * c->wheel_max_speed_rad_s);
    if (!wheel_ok) f |= OHIL_ADCS_F_WHEEL_SPEED;

    double tw[3] = {0.0, 0.0, 0.0}; /* wheel motor torque command */
    double dip[3] = {0.0, 0.0, 0.0};
    double perr = -1.0;

    if (dt_ok) {
        /* ---------------- determination ---------------- */
        double w[3];
        if (gyro_ok) {
            w[0] = in->rate_rad_s[0] - st->bias_rad_s[0];
            w[1] = in->rate_rad_s[1] - st->bias_rad_s[1];
            w[2] = in->rate_rad_s[2] - st->bias_rad_s[2];
            ohil_copy3(w, st->rate_rad_s);
        } else {
            ohil_copy3(st->rate_rad_s, w);
        }
        if (!st->att_init && sun_ok && mag_ok && sref_ok && bref_ok) {
            double q[4];
            if (triad(s_b, bhat_b, s_i, bhat_i, q)) {
                memcpy(st->q_bi, q, sizeof(q));
                st->att_init = 1;
            }
        }
        double corr[3] = {0.0, 0.0, 0.0};
        if (st->att_init) {
            double pred[3], x[3];
            if (sun_ok && sref_ok) {
                ohil_qrot(st->q_bi, s_i, pred);
                ohil_cross3(s_b, pred, x);
                corr[0] += c->k_sun * x[0];
                corr[1] += c->k_sun * x[1];
                corr[2] += c->k_sun * x[2];
            }
            if (mag_ok && bref_ok) {
                ohil_qrot(st->q_bi, bhat_i, pred);
                ohil_cross3(bhat_b, pred, x);
                corr[0] += c->k_mag * x[0];
                corr[1] += c->k_mag * x[1];
                corr[2] += c->k_mag * x[2];
            }
            if (gyro_ok) {
                for (int i = 0; i < 3; ++i) {
                    st->bias_rad_s[i] = ohil_clamp(st->bias_rad_s[i] - c->k_bias * corr[i] * dt,
                                                   -c->max_bias_rad_s, c->max_bias_rad_s);
                }
            }
        }
        double wp[3] = {w[0] + corr[0], w[1] + corr[1], w[2] + corr[2]};
        propagate(st->q_bi, wp, dt);
        st->time_since_sun_s = sun_ok ? 0.0 : st->time_since_sun_s + dt;
        const int att_valid = st->att_init && st->time_since_sun_s <= c->att_hold_s;

        /* sun direction in body: measured, else predicted from a trusted estimate */
        double s_use[3] = {0.0, 0.0, 0.0};
        int s_known = 0;
        if (sun_ok) {
            ohil_copy3(s_b, s_use);
            s_known = 1;
        } else if (att_valid && sref_ok) {
            ohil_qrot(st->q_bi, s_i, s_use);
            s_known = 1;
        }

        /* ---------------- control ---------------- */
        if (mode == OHIL_ADCS_MODE_DETUMBLE) {
            double bdot[3] = {0.0, 0.0, 0.0};
            int have = 0;
            if (gyro_ok && mag_ok) { /* dB/dt in body = -w x B = B x w */
                ohil_cross3(b_b, w, bdot);
                have = 1;
            } else if (mag_ok && st->have_b_prev) {
                for (int i = 0; i < 3; ++i) bdot[i] = (b_b[i] - st->b_prev_body_t[i]) / dt;
                have = 1;
            }
            if (have) {
                ohil_scale3(bdot, -c->bdot_gain, dip);
                if (sat_vec(dip, c->dipole_max_am2)) f |= OHIL_ADCS_F_DIPOLE_SAT;
            }
            if (s_known) {
                double ax[3];
                perr = sun_error(c, s_use, ax);
            }
        } else if (gyro_ok && wheel_ok) {
            const double kw = c->att_wn_rad_s / (2.0 * c->att_zeta);
            const double kd = 2.0 * c->att_zeta * c->att_wn_rad_s;
            double wdes[3] = {0.0, 0.0, 0.0};
            if (mode == OHIL_ADCS_MODE_SUN_POINT) {
                if (s_known) {
                    double ax[3];
                    perr = sun_error(c, s_use, ax);
                    ohil_scale3(ax, kw * perr, wdes);
                    sat_norm(wdes, c->max_slew_rate_rad_s);
                } else {
                    ohil_scale3(c->search_axis_body, c->search_rate_rad_s, wdes);
                }
            } else { /* NADIR_POINT */
                double q_ri[4], w_r[3];
                if (st->att_init && orbit_in && lvlh(in->r_eci_m, in->v_eci_m_s, q_ri, w_r)) {
                    double qc[4] = {q_ri[0], -q_ri[1], -q_ri[2], -q_ri[3]}, q_br[4];
                    ohil_qmul(st->q_bi, qc, q_br);
                    if (q_br[0] < 0.0) {
                        for (int i = 0; i < 4; ++i) q_br[i] = -q_br[i];
                    }
                    double qv[3] = {q_br[1], q_br[2], q_br[3]};
                    perr = 2.0 * atan2(ohil_norm3(qv), q_br[0]);
                    double corr_w[3], wr_b[3];
                    ohil_scale3(qv, 2.0 * kw, corr_w);
                    sat_norm(corr_w, c->max_slew_rate_rad_s);
                    ohil_qrot(q_br, w_r, wr_b);
                    for (int i = 0; i < 3; ++i) wdes[i] = wr_b[i] + corr_w[i];
                } /* else no attitude or no orbit: wdes = 0 holds the rate at zero */
            }
            double hw[3], hb[3], gyro[3];
            for (int i = 0; i < 3; ++i) {
                hw[i] = c->wheel_inertia_kgm2 * in->wheel_speed_rad_s[i];
                hb[i] = c->inertia_kgm2[i] * w[i] + hw[i];
            }
            ohil_cross3(w, hb, gyro);
            for (int i = 0; i < 3; ++i) {
                double u = c->inertia_kgm2[i] * kd * (wdes[i] - w[i]);
                tw[i] = -u - gyro[i];
            }
            if (sat_vec(tw, c->wheel_max_torque_nm)) f |= OHIL_ADCS_F_WHEEL_SAT;
            for (int i = 0; i < 3; ++i) {
                double spd = in->wheel_speed_rad_s[i];
                if ((spd >= c->wheel_max_speed_rad_s && tw[i] > 0.0) ||
                    (spd <= -c->wheel_max_speed_rad_s && tw[i] < 0.0)) {
                    tw[i] = 0.0;
                    f |= OHIL_ADCS_F_WHEEL_SAT;
                }
            }
            /* cross-product momentum unloading: m = k (h x B) / |B|^2 */
            if (mag_ok && c->unload_gain_per_s > 0.0) {
                double x[3];
                ohil_cross3(hw, b_b, x);
                ohil_scale3(x, c->unload_gain_per_s / (bn * bn), dip);
                if (sat_vec(dip, c->dipole_max_am2)) f |= OHIL_ADCS_F_DIPOLE_SAT;
            }
        } else if (mode == OHIL_ADCS_MODE_SUN_POINT && s_known) {
            double ax[3];
            perr = sun_error(c, s_use, ax);
        }

        if (mag_ok) {
            ohil_copy3(b_b, st->b_prev_body_t);
            st->have_b_prev = 1;
        } else {
            st->have_b_prev = 0;
        }
        out->att_valid = att_valid;
    } else {
        out->att_valid = st->att_init && st->time_since_sun_s <= c->att_hold_s;
    }

    /* last guard: nothing non-finite reaches an actuator */
    if (!ohil_finite3(tw) || !ohil_finite3(dip)) {
        ohil_zero3(tw);
        ohil_zero3(dip);
        f |= OHIL_ADCS_F_INTERNAL;
    }
    if (!isfinite(perr)) perr = -1.0;
    ohil_copy3(tw, st->wheel_torque_cmd_nm);
    ohil_copy3(dip, st->dipole_cmd_am2);

    memcpy(out->q_bi, st->q_bi, sizeof(out->q_bi));
    ohil_copy3(st->rate_rad_s, out->rate_rad_s);
    ohil_copy3(st->bias_rad_s, out->bias_rad_s);
    ohil_copy3(tw, out->wheel_torque_cmd_nm);
    ohil_copy3(dip, out->dipole_cmd_am2);
    out->pointing_error_rad = perr;
    out->sun_valid = sun_ok;
    out->mode = mode;
    out->fault_flags = f;
}

void ohil_adcs_step_batch(const ohil_adcs_cfg *cfg, ohil_adcs_state *st, const ohil_adcs_in *in,
                          ohil_adcs_out *out, size_t n)
{
    for (size_t k = 0; k < n; ++k) ohil_adcs_step(cfg, st, &in[k], &out[k]);
}

void ohil_adcs_run_port(const ohil_adcs_cfg *cfg, ohil_adcs_state *st, ohil_adcs_in *in,
                        ohil_adcs_out *out, size_t n, ohil_adcs_sense_fn sense,
                        ohil_adcs_actuate_fn actuate, void *ctx)
{
    double s[OHIL_ADCS_SENSE_N];
    double a[OHIL_ADCS_ACT_N];
    if (sense == NULL || actuate == NULL) return;
    for (size_t k = 0; k < n; ++k) {
        sense(ctx, s);
        for (int i = 0; i < 3; ++i) {
            in->rate_rad_s[i] = s[i];
            in->b_body_t[i] = s[3 + i];
            in->sun_body[i] = s[6 + i];
            in->wheel_speed_rad_s[i] = s[10 + i];
        }
        in->sun_valid = s[9] != 0.0;
        ohil_adcs_step(cfg, st, in, out);
        for (int i = 0; i < 3; ++i) {
            a[i] = out->dipole_cmd_am2[i];
            a[3 + i] = out->wheel_torque_cmd_nm[i];
        }
        actuate(ctx, a);
    }
}
