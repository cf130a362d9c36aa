/* Thermal: zone heaters with hysteresis and minimum on/off times, payload
 * derating throttle, over-temperature trip. See ohil_thermal.h. */
#include <math.h>
#include <string.h>

#include "ohil_thermal.h"
#include "ohil_vec.h"

int ohil_therm_init(const ohil_therm_cfg *c)
{
    if (c == NULL) return OHIL_THERM_E_NULL;
    if (c->n_zones < 0 || c->n_zones > OHIL_THERM_MAX_ZONES) return OHIL_THERM_E_N_ZONES;
    for (int i = 0; i < c->n_zones; ++i) {
        if (!ohil_pos(c->heater_on_k[i])) return OHIL_THERM_E_HEATER_ON;
        if (!isfinite(c->heater_off_k[i]) || c->heater_off_k[i] <= c->heater_on_k[i]) {
            return OHIL_THERM_E_HEATER_OFF;
        }
        if (!ohil_nonneg(c->heater_power_w[i])) return OHIL_THERM_E_HEATER_POWER;
    }
    if (!ohil_nonneg(c->min_on_s)) return OHIL_THERM_E_MIN_ON;
    if (!ohil_nonneg(c->min_off_s)) return OHIL_THERM_E_MIN_OFF;
    if (!ohil_pos(c->derate_start_k)) return OHIL_THERM_E_DERATE_START;
    if (!isfinite(c->derate_end_k) || c->derate_end_k <= c->derate_start_k) {
        return OHIL_THERM_E_DERATE_END;
    }
    if (!ohil_pos(c->throttle_down_per_s)) return OHIL_THERM_E_THROTTLE_DOWN;
    if (!ohil_pos(c->throttle_up_per_s)) return OHIL_THERM_E_THROTTLE_UP;
    if (!isfinite(c->trip_k) || c->trip_k < c->derate_end_k) return OHIL_THERM_E_TRIP;
    if (!ohil_pos(c->trip_reset_k) || c->trip_reset_k >= c->trip_k) return OHIL_THERM_E_TRIP_RESET;
    if (!ohil_pos(c->max_dt_s)) return OHIL_THERM_E_MAX_DT;
    return 0;
}

void ohil_therm_reset(const ohil_therm_cfg *c, ohil_therm_state *st)
{
    (void)c;
    memset(st, 0, sizeof(*st));
    st->throttle = 0.0; /* ramps up from 0 at the up rate */
    for (int i = 0; i < OHIL_THERM_MAX_ZONES; ++i) st->time_in_state_s[i] = INFINITY;
}

void ohil_therm_step(const ohil_therm_cfg *c, ohil_therm_state *st, const ohil_therm_in *in,
                     ohil_therm_out *out)
{
    uint32_t f = 0;
    const double dt = in->dt_s;
    const int dt_ok = isfinite(dt) && dt > 0.0 && dt <= c->max_dt_s;
    if (!dt_ok) f |= OHIL_THERM_F_DT;

    /* ---- heaters ---- */
    uint32_t mask = st->heater_mask;
    double hp = 0.0;
    for (int i = 0; i < c->n_zones; ++i) {
        const uint32_t bit = 1u << i;
        const int on = (mask & bit) != 0;
        const double t = in->temp_k[i];
        if (dt_ok) st->time_in_state_s[i] += dt;
        if (!isfinite(t)) {
            f |= bit; /* OHIL_THERM_F_ZONE0 << i */
            if (on) {
                mask &= ~bit;
                st->time_in_state_s[i] = 0.0;
            }
        } else if (!on && t < c->heater_on_k[i] && st->time_in_state_s[i] >= c->min_off_s) {
            mask |= bit;
            st->time_in_state_s[i] = 0.0;
        } else if (on && t > c->heater_off_k[i] && st->time_in_state_s[i] >= c->min_on_s) {
            mask &= ~bit;
            st->time_in_state_s[i] = 0.0;
        }
        if (mask & bit) hp += c->heater_power_w[i];
    }
    st->heater_mask = mask;

    /* ---- payload derating and trip ---- */
    const double tp = in->payload_temp_k;
    if (!isfinite(tp)) {
        f |= OHIL_THERM_F_PAYLOAD;
    } else {
        if (tp > c->trip_k) st->tripped = 1;
        if (st->tripped && tp < c->trip_reset_k) st->tripped = 0;
        if (st->tripped) {
            st->throttle = 0.0;
        } else if (dt_ok) {
            double target = (c->derate_end_k - tp) / (c->derate_end_k - c->derate_start_k);
            target = ohil_clamp(target, 0.0, 1.0);
            const double up = c->throttle_up_per_s * dt, down = c->throttle_down_per_s * dt;
            st->throttle = ohil_clamp(target, st->throttle - down, st->throttle + up);
            st->throttle = ohil_clamp(st->throttle, 0.0, 1.0);
        }
    }
    if (st->tripped) f |= OHIL_THERM_F_TRIP;

    out->payload_throttle = st->throttle;
    out->heater_power_w = hp;
    out->heater_mask = mask;
    out->trip = st->tripped;
    out->fault_flags = f;
}

void ohil_therm_step_batch(const ohil_therm_cfg *cfg, ohil_therm_state *st,
                           const ohil_therm_in *in, ohil_therm_out *out, size_t n)
{
    for (size_t k = 0; k < n; ++k) ohil_therm_step(cfg, st, &in[k], &out[k]);
}
