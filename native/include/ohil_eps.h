/* EPS: battery state of charge, power modes, load shedding, payload budget.
 *
 * SOC: coulomb counting (charge scaled by the coulombic efficiency), corrected
 * toward the open-circuit-voltage SOC once the battery has rested (|I| below
 * rest_current_a for rest_time_s) with a first-order blend of time constant
 * ocv_tau_s. With soc_init < 0 the first valid voltage initializes the SOC from
 * the OCV table.
 *
 * Power mode: NOMINAL -> LOW below low_enter_soc, LOW -> NOMINAL above
 * low_exit_soc, -> CRITICAL below critical_enter_soc or below
 * critical_voltage_v, CRITICAL -> LOW above critical_exit_soc (and voltage
 * back above critical_voltage_v).
 *
 * Loads: a prioritized list (index 0 first). Load i is switched on when the
 * flight software requests it (load_request_mask bit i) and the present mode is
 * below load_shed_mode[i] (1: shed in LOW and CRITICAL, 2: shed in CRITICAL,
 * 3: never shed).
 *
 * Payload budget: the largest constant payload power P such that the SOC at
 * the exit of the next eclipse stays above soc_floor:
 *   min(E + (P_gen - P_load - P) t_sun * eff, E_max) - (P_load + P) t_ecl >= E_floor
 * with t_sun = time_to_eclipse_s and t_ecl = eclipse_duration_s (in eclipse:
 * time_to_eclipse_s = 0, eclipse_duration_s = time left). Scaled by
 * budget_margin, clamped to [0, payload_max_w], zero in CRITICAL. */
#ifndef OHIL_EPS_H
#define OHIL_EPS_H

#include <stddef.h>
#include <stdint.h>

#define OHIL_EPS_MAX_LOADS 16
#define OHIL_EPS_OCV_POINTS 11

enum {
    OHIL_EPS_MODE_NOMINAL = 0,
    OHIL_EPS_MODE_LOW = 1,
    OHIL_EPS_MODE_CRITICAL = 2
};

enum {
    OHIL_EPS_F_DT = 1,             /* dt not finite, <= 0 or > max_dt_s: SOC held */
    OHIL_EPS_F_VOLTAGE = 2,        /* battery voltage not finite: no OCV correction, no undervoltage check */
    OHIL_EPS_F_CURRENT = 4,        /* battery current not finite: SOC held */
    OHIL_EPS_F_POWER = 8,          /* generation / load power not finite: budget zeroed */
    OHIL_EPS_F_ECLIPSE = 16,       /* eclipse timing not finite or negative: budget zeroed */
    OHIL_EPS_F_DEMAND = 32,        /* payload demand not finite or negative: grant zeroed */
    OHIL_EPS_F_UNDERVOLTAGE = 64,  /* battery voltage below critical_voltage_v */
    OHIL_EPS_F_SOC_UNKNOWN = 128   /* no valid voltage yet to initialize the SOC */
};

enum {
    OHIL_EPS_E_CAPACITY = 201,
    OHIL_EPS_E_CHARGE_EFF = 202,
    OHIL_EPS_E_OCV = 203,
    OHIL_EPS_E_REST_CURRENT = 204,
    OHIL_EPS_E_REST_TIME = 205,
    OHIL_EPS_E_OCV_TAU = 206,
    OHIL_EPS_E_SOC_INIT = 207,
    OHIL_EPS_E_LOW_ENTER = 208,
    OHIL_EPS_E_LOW_EXIT = 209,
    OHIL_EPS_E_CRIT_ENTER = 210,
    OHIL_EPS_E_CRIT_EXIT = 211,
    OHIL_EPS_E_CRIT_VOLTAGE = 212,
    OHIL_EPS_E_N_LOADS = 213,
    OHIL_EPS_E_LOAD_SHED_MODE = 214,
    OHIL_EPS_E_SOC_FLOOR = 215,
    OHIL_EPS_E_PAYLOAD_MAX = 216,
    OHIL_EPS_E_BUDGET_MARGIN = 217,
    OHIL_EPS_E_MAX_DT = 218,
    OHIL_EPS_E_NULL = 299
};

typedef struct {
    double capacity_ah;                          /* > 0 */
    double charge_eff;                           /* (0, 1] */
    double ocv_v[OHIL_EPS_OCV_POINTS];           /* OCV at SOC 0, 0.1, ..., 1.0; strictly increasing */
    double rest_current_a;                       /* >= 0 */
    double rest_time_s;                          /* >= 0 */
    double ocv_tau_s;                            /* > 0 */
    double soc_init;                             /* [0, 1], or < 0: from the first OCV */
    double low_enter_soc;
    double low_exit_soc;                         /* > low_enter_soc */
    double critical_enter_soc;                   /* < low_enter_soc */
    double critical_exit_soc;                    /* in (critical_enter_soc, low_exit_soc) */
    double critical_voltage_v;                   /* >= 0 */
    int32_t n_loads;                             /* 0..OHIL_EPS_MAX_LOADS */
    int32_t load_shed_mode[OHIL_EPS_MAX_LOADS];  /* 1..3 for each used load */
    double soc_floor;                            /* [0, 1): SOC kept at eclipse exit */
    double payload_max_w;                        /* >= 0 */
    double budget_margin;                        /* (0, 1] */
    double max_dt_s;                             /* > 0 */
} ohil_eps_cfg;

typedef struct {
    double soc;
    double rest_time_s;
    int32_t soc_valid;
    int32_t mode;
} ohil_eps_state;

typedef struct {
    double dt_s;
    double battery_voltage_v;
    double battery_current_a;        /* + charging */
    double solar_power_w;            /* present generation */
    double load_power_w;             /* bus load without the payload */
    double time_to_eclipse_s;        /* 0 when in eclipse */
    double eclipse_duration_s;       /* of the next eclipse; time left when in eclipse */
    double payload_demand_w;
    uint32_t load_request_mask;      /* bit i: the flight software wants load i on */
} ohil_eps_in;

typedef struct {
    double soc;                      /* [0, 1] */
    double payload_budget_w;
    double payload_grant_w;          /* min(demand, budget) */
    int32_t power_mode;              /* OHIL_EPS_MODE_* */
    uint32_t load_switch_mask;       /* bit i: load i on */
    uint32_t fault_flags;            /* OHIL_EPS_F_* */
} ohil_eps_out;

int ohil_eps_init(const ohil_eps_cfg *cfg);
void ohil_eps_reset(const ohil_eps_cfg *cfg, ohil_eps_state *st);
void ohil_eps_step(const ohil_eps_cfg *cfg, ohil_eps_state *st,
                   const ohil_eps_in *in, ohil_eps_out *out);
void ohil_eps_step_batch(const ohil_eps_cfg *cfg, ohil_eps_state *st,
                         const ohil_eps_in *in, ohil_eps_out *out, size_t n);

#endif /* OHIL_EPS_H */
