/* Thermal: zone heaters, payload derating, over-temperature trip.
 *
 * Heaters: zone i's heater turns on below heater_on_k[i] and off above
 * heater_off_k[i], and never switches before min_on_s / min_off_s have passed
 * in its present state. A zone whose sensor is not finite has its heater off.
 *
 * Payload throttle: the target is 1 below derate_start_k, 0 above derate_end_k,
 * linear between. The throttle moves toward it at most throttle_down_per_s
 * (down) and throttle_up_per_s (up). Above trip_k the trip latches and the
 * throttle is 0 at once; it clears below trip_reset_k. A non-finite payload
 * temperature holds the throttle and raises a fault. */
#ifndef OHIL_THERMAL_H
#define OHIL_THERMAL_H

#include <stddef.h>
#include <stdint.h>

#define OHIL_THERM_MAX_ZONES 8

enum {
    OHIL_THERM_F_ZONE0 = 1,          /* bit i (i < 8): zone i sensor not finite, its heater off */
    OHIL_THERM_F_PAYLOAD = 256,      /* payload temperature not finite: throttle held */
    OHIL_THERM_F_DT = 512,           /* dt not finite, <= 0 or > max_dt_s: timers and throttle held */
    OHIL_THERM_F_TRIP = 1024         /* over-temperature trip latched */
};

enum {
    OHIL_THERM_E_N_ZONES = 301,
    OHIL_THERM_E_HEATER_ON = 302,
    OHIL_THERM_E_HEATER_OFF = 303,
    OHIL_THERM_E_HEATER_POWER = 304,
    OHIL_THERM_E_MIN_ON = 305,
    OHIL_THERM_E_MIN_OFF = 306,
    OHIL_THERM_E_DERATE_START = 307,
    OHIL_THERM_E_DERATE_END = 308,
    OHIL_THERM_E_THROTTLE_DOWN = 309,
    OHIL_THERM_E_THROTTLE_UP = 310,
    OHIL_THERM_E_TRIP = 311,
    OHIL_THERM_E_TRIP_RESET = 312,
    OHIL_THERM_E_MAX_DT = 313,
    OHIL_THERM_E_NULL = 399
};

typedef struct {
    int32_t n_zones;                               /* 0..OHIL_THERM_MAX_ZONES */
    double heater_on_k[OHIL_THERM_MAX_ZONES];      /* > 0 */
    double heater_off_k[OHIL_THERM_MAX_ZONES];     /* > heater_on_k */
    double heater_power_w[OHIL_THERM_MAX_ZONES];   /* >= 0, reported in out.heater_power_w */
    double min_on_s;                               /* >= 0 */
    double min_off_s;                              /* >= 0 */
    double derate_start_k;                         /* > 0 */
    double derate_end_k;                           /* > derate_start_k */
    double throttle_down_per_s;                    /* > 0 */
    double throttle_up_per_s;                      /* > 0 */
    double trip_k;                                 /* >= derate_end_k */
    double trip_reset_k;                           /* < trip_k */
    double max_dt_s;                               /* > 0 */
} ohil_therm_cfg;

typedef struct {
    double time_in_state_s[OHIL_THERM_MAX_ZONES];
    double throttle;
    uint32_t heater_mask;
    int32_t tripped;
} ohil_therm_state;

typedef struct {
    double dt_s;
    double temp_k[OHIL_THERM_MAX_ZONES];           /* zone temperatures */
    double payload_temp_k;
} ohil_therm_in;

typedef struct {
    double payload_throttle;                       /* [0, 1] */
    double heater_power_w;                         /* sum over heaters on */
    uint32_t heater_mask;                          /* bit i: zone i heater on */
    int32_t trip;                                  /* over-temperature trip latched */
    uint32_t fault_flags;                          /* OHIL_THERM_F_* */
} ohil_therm_out;

int ohil_therm_init(const ohil_therm_cfg *cfg);
void ohil_therm_reset(const ohil_therm_cfg *cfg, ohil_therm_state *st);
void ohil_therm_step(const ohil_therm_cfg *cfg, ohil_therm_state *st,
                     const ohil_therm_in *in, ohil_therm_out *out);
void ohil_therm_step_batch(const ohil_therm_cfg *cfg, ohil_therm_state *st,
                           const ohil_therm_in *in, ohil_therm_out *out, size_t n);

#endif /* OHIL_THERMAL_H */
