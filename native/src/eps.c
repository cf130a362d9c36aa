/* EPS: SOC estimation, power-mode state machine, load shedding and the
 * energy-aware payload budget. See ohil_eps.h. No heap, no statics. */
#include <math.h>
#include <string.h>

#include "ohil_eps.h"
#include "ohil_vec.h"

int ohil_eps_init(const ohil_eps_cfg *c)
{
    if (c == NULL) return OHIL_EPS_E_NULL;
    if (!ohil_pos(c->capacity_ah)) return OHIL_EPS_E_CAPACITY;
    if (!ohil_pos(c->charge_eff) || c->charge_eff > 1.0) return OHIL_EPS_E_CHARGE_EFF;
    for (int i = 0; i < OHIL_EPS_OCV_POINTS; ++i) {
        if (!ohil_pos(c->ocv_v[i])) return OHIL_EPS_E_OCV;
        if (i > 0 && !(c->ocv_v[i] > c->ocv_v[i - 1])) return OHIL_EPS_E_OCV;
    }
    if (!ohil_nonneg(c->rest_current_a)) return OHIL_EPS_E_REST_CURRENT;
    if (!ohil_nonneg(c->rest_time_s)) return OHIL_EPS_E_REST_TIME;
    if (!ohil_pos(c->ocv_tau_s)) return OHIL_EPS_E_OCV_TAU;
    if (!isfinite(c->soc_init) || c->soc_init > 1.0) return OHIL_EPS_E_SOC_INIT;
    if (!isfinite(c->low_enter_soc) || c->low_enter_soc <= 0.0 || c->low_enter_soc >= 1.0) {
        return OHIL_EPS_E_LOW_ENTER;
    }
    if (!isfinite(c->low_exit_soc) || c->low_exit_soc <= c->low_enter_soc ||
        c->low_exit_soc >= 1.0) {
        return OHIL_EPS_E_LOW_EXIT;
    }
    if (!isfinite(c->critical_enter_soc) || c->critical_enter_soc < 0.0 ||
        c->critical_enter_soc >= c->low_enter_soc) {
        return OHIL_EPS_E_CRIT_ENTER;
    }
    if (!isfinite(c->critical_exit_soc) || c->critical_exit_soc <= c->critical_enter_soc ||
        c->critical_exit_soc >= c->low_exit_soc) {
        return OHIL_EPS_E_CRIT_EXIT;
    }
    if (!ohil_nonneg(c->critical_voltage_v)) return OHIL_EPS_E_CRIT_VOLTAGE;
    if (c->n_loads < 0 || c->n_loads > OHIL_EPS_MAX_LOADS) return OHIL_EPS_E_N_LOADS;
    for (int i = 0; i < c->n_loads; ++i) {
        if (c->load_shed_mode[i] < 1 || c->load_shed_mode[i] > 3) {
            return OHIL_EPS_E_LOAD_SHED_MODE;
        }
    }
    if (!isfinite(c->soc_floor) || c->soc_floor < 0.0 || c->soc_floor >= 1.0) {
        return OHIL_EPS_E_SOC_FLOOR;
    }
    if (!ohil_nonneg(c->payload_max_w)) return OHIL_EPS_E_PAYLOAD_MAX;
    if (!ohil_pos(c->budget_margin) || c->budget_margin > 1.0) return OHIL_EPS_E_BUDGET_MARGIN;
    if (!ohil_pos(c->max_dt_s)) return OHIL_EPS_E_MAX_DT;
    return 0;
}

void ohil_eps_reset(const ohil_eps_cfg *c, ohil_eps_state *st)
{
    memset(st, 0, sizeof(*st));
    st->mode = OHIL_EPS_MODE_NOMINAL;
    if (c->soc_init >= 0.0) {
        st->soc = c->soc_init;
        st->soc_valid = 1;
    }
}

/* SOC from the OCV table (piecewise linear, clamped). */
static double soc_from_ocv(const ohil_eps_cfg *c, double v)
{
    const int n = OHIL_EPS_OCV_POINTS;
    if (v <= c->ocv_v[0]) return 0.0;
    if (v >= c->ocv_v[n - 1]) return 1.0;
    for (int i = 1; i < n; ++i) {
        if (v <= c->ocv_v[i]) {
            double t = (v - c->ocv_v[i - 1]) / (c->ocv_v[i] - c->ocv_v[i - 1]);
            return ((double)(i - 1) + t) / (double)(n - 1);
        }
    }
    return 1.0;
}

/* Stored energy at SOC 1, joules: capacity times the table's mean OCV. */
static double capacity_j(const ohil_eps_cfg *c)
{
    const int n = OHIL_EPS_OCV_POINTS;
    double s = 0.5 * (c->ocv_v[0] + c->ocv_v[n - 1]);
    for (int i = 1; i < n - 1; ++i) s += c->ocv_v[i];
    return c->capacity_ah * 3600.0 * s / (double)(n - 1);
}

void ohil_eps_step(const ohil_eps_cfg *c, ohil_eps_state *st, const ohil_eps_in *in,
                   ohil_eps_out *out)
{
    uint32_t f = 0;
    const double dt = in->dt_s;
    const int dt_ok = isfinite(dt) && dt > 0.0 && dt <= c->max_dt_s;
    if (!dt_ok) f |= OHIL_EPS_F_DT;
    const double v = in->battery_voltage_v;
    const double cur = in->battery_current_a;
    const int v_ok = isfinite(v);
    const int i_ok = isfinite(cur);
    if (!v_ok) f |= OHIL_EPS_F_VOLTAGE;
    if (!i_ok) f |= OHIL_EPS_F_CURRENT;

    /* ---- state of charge ---- */
    if (!st->soc_valid && v_ok) {
        st->soc = soc_from_ocv(c, v);
        st->soc_valid = 1;
    } else if (st->soc_valid && dt_ok && i_ok) {
        double dq = cur * dt / (3600.0 * c->capacity_ah);
        if (cur > 0.0) dq *= c->charge_eff;
        st->soc += dq;
        if (fabs(cur) < c->rest_current_a) {
            st->rest_time_s += dt;
        } else {
            st->rest_time_s = 0.0;
        }
        if (v_ok && st->rest_time_s >= c->rest_time_s) {
            double a = 1.0 - exp(-dt / c->ocv_tau_s);
            st->soc += a * (soc_from_ocv(c, v) - st->soc);
        }
        st->soc = ohil_clamp(st->soc, 0.0, 1.0);
    } else if (!i_ok) {
        st->rest_time_s = 0.0;
    }
    if (!st->soc_valid) f |= OHIL_EPS_F_SOC_UNKNOWN;

    /* ---- power mode, with hysteresis ---- */
    const int uv = v_ok && v < c->critical_voltage_v;
    if (uv) f |= OHIL_EPS_F_UNDERVOLTAGE;
    const double soc = st->soc;
    const int known = st->soc_valid;
    switch (st->mode) {
    case OHIL_EPS_MODE_NOMINAL:
        if (uv || (known && soc < c->critical_enter_soc)) {
            st->mode = OHIL_EPS_MODE_CRITICAL;
        } else if (known && soc < c->low_enter_soc) {
            st->mode = OHIL_EPS_MODE_LOW;
        }
        break;
    case OHIL_EPS_MODE_LOW:
        if (uv || (known && soc < c->critical_enter_soc)) {
            st->mode = OHIL_EPS_MODE_CRITICAL;
        } else if (known && soc > c->low_exit_soc) {
            st->mode = OHIL_EPS_MODE_NOMINAL;
        }
        break;
    default:
        if (!uv && known && soc > c->critical_exit_soc) st->mode = OHIL_EPS_MODE_LOW;
        break;
    }

    /* ---- prioritized load shedding ---- */
    uint32_t mask = 0;
    for (int i = 0; i < c->n_loads; ++i) {
        if (((in->load_request_mask >> i) & 1u) && st->mode < c->load_shed_mode[i]) {
            mask |= 1u << i;
        }
    }

    /* ---- energy-aware payload budget ---- */
    double budget = 0.0;
    const double pg = in->solar_power_w, pl = in->load_power_w;
    const double ts = in->time_to_eclipse_s, te = in->eclipse_duration_s;
    const int p_ok = ohil_nonneg(pg) && ohil_nonneg(pl);
    const int e_ok = ohil_nonneg(ts) && ohil_nonneg(te);
    if (!p_ok) f |= OHIL_EPS_F_POWER;
    if (!e_ok) f |= OHIL_EPS_F_ECLIPSE;
    if (p_ok && e_ok && known && st->mode != OHIL_EPS_MODE_CRITICAL) {
        const double ecap = capacity_j(c);
        const double e_now = soc * ecap, e_floor = c->soc_floor * ecap;
        const double net = pg - pl;
        const double horizon = ts + te;
        double p;
        if (horizon > 0.0) {
            double a = e_now + (net > 0.0 ? net * c->charge_eff : net) * ts;
            p = (a - pl * te - e_floor) / horizon;
            if (te > 0.0) p = fmin(p, (ecap - e_floor) / te - pl);
        } else {
            p = net; /* no horizon: only the present surplus */
        }
        budget = ohil_clamp(p * c->budget_margin, 0.0, c->payload_max_w);
        if (!isfinite(budget)) budget = 0.0;
    }
    double grant = 0.0;
    if (ohil_nonneg(in->payload_demand_w)) {
        grant = fmin(in->payload_demand_w, budget);
    } else {
        f |= OHIL_EPS_F_DEMAND;
    }

    out->soc = st->soc;
    out->payload_budget_w = budget;
    out->payload_grant_w = grant;
    out->power_mode = st->mode;
    out->load_switch_mask = mask;
    out->fault_flags = f;
}

void ohil_eps_step_batch(const ohil_eps_cfg *cfg, ohil_eps_state *st, const ohil_eps_in *in,
                         ohil_eps_out *out, size_t n)
{
    for (size_t k = 0; k < n; ++k) ohil_eps_step(cfg, st, &in[k], &out[k]);
}
