/* C test driver for the flight core, built and run under AddressSanitizer and
 * UndefinedBehaviorSanitizer by tests/test_native_sanitizers.py:
 *
 *   gcc -std=c99 -Wall -Wextra -Werror -g -fsanitize=address,undefined
 *       -fno-sanitize-recover=all -Inative/include native/src/(every .c)
 *       native/ctest/test_core.c -lm -o test_core && ./test_core
 *
 * It fuzzes every loop with random inputs (a local LCG, fixed seed) including
 * NaN and Inf, checks the actuator invariants, config validation, batch vs
 * single stepping, a C sensor/actuator port (ohil_adcs_run_port) against single
 * steps, and that two instances never interfere. Exit 0 = pass. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ohil_core.h"

static int failures; /* test driver only: never linked into the core */

#define CHECK(cond)                                                               \
    do {                                                                          \
        if (!(cond)) {                                                            \
            if (failures < 20) fprintf(stderr, "%s:%d: CHECK(%s)\n", __FILE__, __LINE__, #cond); \
            ++failures;                                                           \
        }                                                                         \
    } while (0)

typedef struct {
    unsigned long long s;
} rng_t;

static double urand(rng_t *r)
{
    r->s = r->s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(r->s >> 11) / 9007199254740992.0;
}

static double span(rng_t *r, double lo, double hi) { return lo + (hi - lo) * urand(r); }

static void default_cfg(ohil_flight_cfg *c)
{
    memset(c, 0, sizeof(*c));
    ohil_adcs_cfg *a = &c->adcs;
    a->inertia_kgm2[0] = 10.0;
    a->inertia_kgm2[1] = 12.0;
    a->inertia_kgm2[2] = 8.0;
    a->wheel_inertia_kgm2 = 8e-4;
    a->wheel_max_torque_nm = 0.03;
    a->wheel_max_speed_rad_s = 628.0;
    a->dipole_max_am2 = 20.0;
    a->bdot_gain = 2e7;
    a->att_wn_rad_s = 0.1;
    a->att_zeta = 0.9;
    a->max_slew_rate_rad_s = 0.02;
    a->unload_gain_per_s = 0.001;
    a->array_normal_body[2] = -1.0;
    a->search_axis_body[0] = 1.0;
    a->search_rate_rad_s = 0.01;
    a->k_sun = 0.05;
    a->k_mag = 0.02;
    a->k_bias = 0.02;
    a->max_bias_rad_s = 0.01;
    a->max_dt_s = 10.0;
    a->att_hold_s = 3000.0;

    ohil_eps_cfg *e = &c->eps;
    const double cell[11] = {3.00, 3.45, 3.55, 3.62, 3.68, 3.74, 3.82, 3.92, 4.00, 4.08, 4.18};
    e->capacity_ah = 20.0;
    e->charge_eff = 0.98;
    for (int i = 0; i < 11; ++i) e->ocv_v[i] = 8.0 * cell[i];
    e->rest_current_a = 0.2;
    e->rest_time_s = 600.0;
    e->ocv_tau_s = 600.0;
    e->soc_init = -1.0;
    e->low_enter_soc = 0.40;
    e->low_exit_soc = 0.50;
    e->critical_enter_soc = 0.20;
    e->critical_exit_soc = 0.30;
    e->critical_voltage_v = 25.6;
    e->n_loads = 8;
    const int shed[8] = {3, 3, 3, 2, 2, 2, 1, 1};
    for (int i = 0; i < 8; ++i) e->load_shed_mode[i] = shed[i];
    e->soc_floor = 0.55;
    e->payload_max_w = 150.0;
    e->budget_margin = 0.9;
    e->max_dt_s = 60.0;

    ohil_therm_cfg *t = &c->therm;
    t->n_zones = 4;
    const double on[4] = {278.15, 263.15, 268.15, 263.15};
    for (int i = 0; i < 4; ++i) {
        t->heater_on_k[i] = on[i];
        t->heater_off_k[i] = on[i] + 5.0;
        t->heater_power_w[i] = 5.0 + i;
    }
    t->min_on_s = 60.0;
    t->min_off_s = 60.0;
    t->derate_start_k = 338.15;
    t->derate_end_k = 358.15;
    t->throttle_down_per_s = 0.05;
    t->throttle_up_per_s = 0.01;
    t->trip_k = 363.15;
    t->trip_reset_k = 343.15;
    t->max_dt_s = 60.0;
}

static double maybe_bad(rng_t *r, double v)
{
    double u = urand(r);
    if (u < 0.01) return NAN;
    if (u < 0.015) return INFINITY;
    if (u < 0.02) return -INFINITY;
    return v;
}

static void random_unit(rng_t *r, double v[3])
{
    double n;
    do {
        v[0] = span(r, -1, 1);
        v[1] = span(r, -1, 1);
        v[2] = span(r, -1, 1);
        n = sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
    } while (n < 1e-3);
    v[0] /= n;
    v[1] /= n;
    v[2] /= n;
}

static void random_input(rng_t *r, ohil_flight_in *in, int corrupt)
{
    memset(in, 0, sizeof(*in));
    ohil_adcs_in *a = &in->adcs;
    a->dt_s = span(r, 0.01, 2.0);
    a->mode = (int)(urand(r) * 3.2); /* sometimes 3: an unknown mode */
    a->sun_valid = urand(r) < 0.7;
    random_unit(r, a->sun_body);
    random_unit(r, a->sun_eci);
    for (int i = 0; i < 3; ++i) {
        a->rate_rad_s[i] = span(r, -0.5, 0.5);
        a->b_body_t[i] = span(r, -5e-5, 5e-5);
        a->b_eci_t[i] = span(r, -5e-5, 5e-5);
        a->r_eci_m[i] = span(r, -7e6, 7e6);
        a->v_eci_m_s[i] = span(r, -7.5e3, 7.5e3);
        a->wheel_speed_rad_s[i] = span(r, -700, 700);
    }
    ohil_eps_in *e = &in->eps;
    e->dt_s = span(r, 0.01, 2.0);
    e->battery_voltage_v = span(r, 22, 34);
    e->battery_current_a = span(r, -30, 30);
    e->solar_power_w = span(r, 0, 400);
    e->load_power_w = span(r, 0, 200);
    e->time_to_eclipse_s = span(r, 0, 4000);
    e->eclipse_duration_s = span(r, 0, 2200);
    e->payload_demand_w = span(r, 0, 300);
    e->load_request_mask = (uint32_t)(urand(r) * 65536.0);
    ohil_therm_in *t = &in->therm;
    t->dt_s = span(r, 0.01, 2.0);
    for (int i = 0; i < OHIL_THERM_MAX_ZONES; ++i) t->temp_k[i] = span(r, 240, 320);
    t->payload_temp_k = span(r, 300, 380);
    if (corrupt) {
        a->dt_s = maybe_bad(r, a->dt_s);
        for (int i = 0; i < 3; ++i) {
            a->rate_rad_s[i] = maybe_bad(r, a->rate_rad_s[i]);
            a->b_body_t[i] = maybe_bad(r, a->b_body_t[i]);
            a->sun_body[i] = maybe_bad(r, a->sun_body[i]);
            a->sun_eci[i] = maybe_bad(r, a->sun_eci[i]);
            a->b_eci_t[i] = maybe_bad(r, a->b_eci_t[i]);
            a->r_eci_m[i] = maybe_bad(r, a->r_eci_m[i]);
            a->v_eci_m_s[i] = maybe_bad(r, a->v_eci_m_s[i]);
            a->wheel_speed_rad_s[i] = maybe_bad(r, a->wheel_speed_rad_s[i]);
        }
        e->dt_s = maybe_bad(r, e->dt_s);
        e->battery_voltage_v = maybe_bad(r, e->battery_voltage_v);
        e->battery_current_a = maybe_bad(r, e->battery_current_a);
        e->solar_power_w = maybe_bad(r, e->solar_power_w);
        e->load_power_w = maybe_bad(r, e->load_power_w);
        e->time_to_eclipse_s = maybe_bad(r, e->time_to_eclipse_s);
        e->eclipse_duration_s = maybe_bad(r, e->eclipse_duration_s);
        e->payload_demand_w = maybe_bad(r, e->payload_demand_w);
        t->dt_s = maybe_bad(r, t->dt_s);
        for (int i = 0; i < OHIL_THERM_MAX_ZONES; ++i) t->temp_k[i] = maybe_bad(r, t->temp_k[i]);
        t->payload_temp_k = maybe_bad(r, t->payload_temp_k);
    }
}

static void check_out(const ohil_flight_cfg *c, const ohil_flight_out *o)
{
    const ohil_adcs_out *a = &o->adcs;
    double qn = 0.0;
    for (int i = 0; i < 4; ++i) qn += a->q_bi[i] * a->q_bi[i];
    CHECK(fabs(sqrt(qn) - 1.0) <= 1e-12);
    for (int i = 0; i < 3; ++i) {
        CHECK(isfinite(a->wheel_torque_cmd_nm[i]));
        CHECK(isfinite(a->dipole_cmd_am2[i]));
        CHECK(fabs(a->wheel_torque_cmd_nm[i]) <= c->adcs.wheel_max_torque_nm);
        CHECK(fabs(a->dipole_cmd_am2[i]) <= c->adcs.dipole_max_am2);
        CHECK(isfinite(a->rate_rad_s[i]));
    }
    CHECK(isfinite(a->pointing_error_rad));
    CHECK((a->fault_flags & OHIL_ADCS_F_INTERNAL) == 0);
    const ohil_eps_out *e = &o->eps;
    CHECK(e->soc >= 0.0 && e->soc <= 1.0);
    CHECK(e->payload_budget_w >= 0.0 && e->payload_budget_w <= c->eps.payload_max_w);
    CHECK(e->payload_grant_w >= 0.0 && e->payload_grant_w <= e->payload_budget_w);
    CHECK(e->power_mode >= 0 && e->power_mode <= 2);
    CHECK((e->load_switch_mask >> c->eps.n_loads) == 0);
    const ohil_therm_out *t = &o->therm;
    CHECK(t->payload_throttle >= 0.0 && t->payload_throttle <= 1.0);
    CHECK(isfinite(t->heater_power_w));
    CHECK((t->heater_mask >> c->therm.n_zones) == 0);
}

static void test_config_errors(void)
{
    ohil_flight_cfg c;
    default_cfg(&c);
    CHECK(ohil_flight_init(&c) == 0);
    CHECK(ohil_flight_init(NULL) != 0);
    CHECK(ohil_adcs_init(NULL) == OHIL_ADCS_E_NULL);

    default_cfg(&c);
    c.adcs.inertia_kgm2[1] = NAN;
    CHECK(ohil_flight_init(&c) == OHIL_ADCS_E_INERTIA);
    CHECK(strcmp(ohil_error_field(OHIL_ADCS_E_INERTIA), "inertia_kgm2") == 0);
    default_cfg(&c);
    c.adcs.search_axis_body[0] = 0.0;
    c.adcs.search_axis_body[2] = 1.0; /* parallel to the array normal */
    CHECK(ohil_flight_init(&c) == OHIL_ADCS_E_SEARCH_AXIS);
    default_cfg(&c);
    c.eps.ocv_v[5] = c.eps.ocv_v[4];
    CHECK(ohil_flight_init(&c) == OHIL_EPS_E_OCV);
    default_cfg(&c);
    c.eps.n_loads = 17;
    CHECK(ohil_flight_init(&c) == OHIL_EPS_E_N_LOADS);
    default_cfg(&c);
    c.eps.critical_exit_soc = 0.6;
    CHECK(ohil_flight_init(&c) == OHIL_EPS_E_CRIT_EXIT);
    default_cfg(&c);
    c.therm.n_zones = -1;
    CHECK(ohil_flight_init(&c) == OHIL_THERM_E_N_ZONES);
    default_cfg(&c);
    c.therm.heater_off_k[2] = c.therm.heater_on_k[2];
    CHECK(ohil_flight_init(&c) == OHIL_THERM_E_HEATER_OFF);
    default_cfg(&c);
    c.therm.trip_reset_k = INFINITY;
    CHECK(ohil_flight_init(&c) == OHIL_THERM_E_TRIP_RESET);
    for (int code = 100; code < 400; ++code) { /* every lookup returns a string */
        CHECK(ohil_error_field(code) != NULL && ohil_error_reason(code) != NULL);
    }
}

static void test_fuzz(void)
{
    ohil_flight_cfg c;
    ohil_flight_state st;
    ohil_flight_in in;
    ohil_flight_out out;
    rng_t r = {12345u};
    default_cfg(&c);
    CHECK(ohil_flight_init(&c) == 0);
    ohil_flight_reset(&c, &st);
    for (int k = 0; k < 50000; ++k) {
        random_input(&r, &in, 1);
        ohil_flight_step(&c, &st, &in, &out);
        check_out(&c, &out);
        if (k % 5000 == 0) ohil_flight_reset(&c, &st);
    }
}

static void test_batch_and_isolation(void)
{
    enum { N = 256 };
    ohil_flight_cfg c, c2;
    ohil_flight_state s1, s2, s3;
    ohil_flight_in ins[N], other;
    ohil_flight_out batch[N], single, out_other;
    rng_t r = {777u};
    default_cfg(&c);
    default_cfg(&c2);
    c2.eps.capacity_ah = 3.0;
    c2.adcs.att_wn_rad_s = 0.3;
    CHECK(ohil_flight_init(&c) == 0 && ohil_flight_init(&c2) == 0);
    for (int k = 0; k < N; ++k) random_input(&r, &ins[k], k % 7 == 0);
    memset(batch, 0, sizeof(batch));
    ohil_flight_reset(&c, &s1);
    ohil_flight_step_batch(&c, &s1, ins, batch, N);
    ohil_flight_reset(&c, &s2);
    ohil_flight_reset(&c2, &s3);
    for (int k = 0; k < N; ++k) {
        random_input(&r, &other, 1); /* a second spacecraft steps in between */
        ohil_flight_step(&c2, &s3, &other, &out_other);
        memset(&single, 0, sizeof(single));
        ohil_flight_step(&c, &s2, &ins[k], &single);
        CHECK(memcmp(&single, &batch[k], sizeof(single)) == 0);
    }
    ohil_flight_run_n(&c, &s2, ins, N, &single, 1000);
    check_out(&c, &single);
    ohil_flight_run_n(&c, &s2, ins, 0, &single, 10); /* no frames: nothing */
    check_out(&c, &single);
    ohil_flight_step_batch(&c, &s2, ins, batch, 0); /* n = 0 touches nothing */
}

/* A port that replays recorded (fuzzed, sometimes NaN/Inf) sensor inputs and
 * records the commands: ohil_adcs_run_port must run the frames of ohil_adcs_step. */
typedef struct {
    const ohil_flight_in *ins;
    int k;
    double act[64][OHIL_ADCS_ACT_N];
    int n_act;
} replay_port;

static void replay_sense(void *ctx, double *s)
{
    replay_port *p = ctx;
    const ohil_adcs_in *in = &p->ins[p->k++].adcs;
    for (int i = 0; i < 3; ++i) {
        s[i] = in->rate_rad_s[i];
        s[3 + i] = in->b_body_t[i];
        s[6 + i] = in->sun_body[i];
        s[10 + i] = in->wheel_speed_rad_s[i];
    }
    s[9] = in->sun_valid ? 1.0 : 0.0;
}

static void replay_actuate(void *ctx, const double *a)
{
    replay_port *p = ctx;
    if (p->n_act < 64) memcpy(p->act[p->n_act++], a, sizeof(double) * OHIL_ADCS_ACT_N);
}

static void test_run_port(void)
{
    enum { N = 64 };
    ohil_flight_cfg c;
    ohil_adcs_state s1, s2;
    ohil_flight_in ins[N];
    ohil_adcs_in in1, in2;
    ohil_adcs_out o1, o2;
    replay_port port = {ins, 0, {{0}}, 0};
    rng_t r = {4242u};
    default_cfg(&c);
    CHECK(ohil_flight_init(&c) == 0);
    for (int k = 0; k < N; ++k) {
        random_input(&r, &ins[k], k % 5 == 0);
        ins[k].adcs.sun_valid = ins[k].adcs.sun_valid != 0; /* the port carries 0 or 1 */
    }
    ohil_adcs_reset(&c.adcs, &s1);
    ohil_adcs_reset(&c.adcs, &s2);
    in2 = ins[0].adcs; /* dt, mode and references as the caller left them */
    memset(&o2, 0, sizeof(o2));
    ohil_adcs_run_port(&c.adcs, &s2, &in2, &o2, N, replay_sense, replay_actuate, &port);
    CHECK(port.k == N && port.n_act == N);
    for (int k = 0; k < N; ++k) {
        in1 = ins[0].adcs;
        memcpy(in1.rate_rad_s, ins[k].adcs.rate_rad_s, sizeof(in1.rate_rad_s));
        memcpy(in1.b_body_t, ins[k].adcs.b_body_t, sizeof(in1.b_body_t));
        memcpy(in1.sun_body, ins[k].adcs.sun_body, sizeof(in1.sun_body));
        memcpy(in1.wheel_speed_rad_s, ins[k].adcs.wheel_speed_rad_s, sizeof(in1.wheel_speed_rad_s));
        in1.sun_valid = ins[k].adcs.sun_valid;
        memset(&o1, 0, sizeof(o1));
        ohil_adcs_step(&c.adcs, &s1, &in1, &o1);
        CHECK(memcmp(port.act[k], o1.dipole_cmd_am2, sizeof(o1.dipole_cmd_am2)) == 0);
        CHECK(memcmp(port.act[k] + 3, o1.wheel_torque_cmd_nm, sizeof(o1.wheel_torque_cmd_nm)) == 0);
    }
    CHECK(memcmp(&o1, &o2, sizeof(o1)) == 0);
    CHECK(memcmp(&s1, &s2, sizeof(s1)) == 0);
    ohil_adcs_run_port(&c.adcs, &s2, &in2, &o2, 0, replay_sense, replay_actuate, &port); /* n = 0 */
    ohil_adcs_run_port(&c.adcs, &s2, &in2, &o2, 5, NULL, replay_actuate, &port);         /* no port */
    CHECK(port.k == N && memcmp(&s1, &s2, sizeof(s1)) == 0);
}

int main(void)
{
    test_config_errors();
    test_fuzz();
    test_batch_and_isolation();
    test_run_port();
    if (failures) {
        fprintf(stderr, "test_core: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_core: all checks passed\n");
    return 0;
}
