/* ADCS: attitude determination and control.
 *
 * Determination: explicit complementary filter (Mahony). The gyro rate, minus
 * an estimated bias, propagates q_bi exactly (closed-form exponential); the sun
 * and magnetometer vectors, measured in body and predicted from the inertial
 * references, give a correction rate sum(k_i * v_meas x v_pred) added to the
 * propagation rate and integrated into the bias. The first step that has both
 * a valid sun vector and a valid field initializes q_bi by TRIAD.
 *
 * Conventions: q_bi is scalar-first Hamilton and rotates inertial to body:
 * v_body = q_bi (x) v_eci (x) conj(q_bi). Rates are body rates, rad/s.
 * wheel_torque_cmd_nm is the motor torque on each wheel (d h_wheel / dt); the
 * body feels minus that. One wheel per body axis. */
#ifndef OHIL_ADCS_H
#define OHIL_ADCS_H

#include <stddef.h>
#include <stdint.h>

/* modes */
enum {
    OHIL_ADCS_MODE_DETUMBLE = 0,
    OHIL_ADCS_MODE_SUN_POINT = 1,
    OHIL_ADCS_MODE_NADIR_POINT = 2
};

/* fault flags (bitmask, out.fault_flags) */
enum {
    OHIL_ADCS_F_DT = 1,            /* dt not finite, <= 0 or > max_dt_s: step skipped, actuators zeroed */
    OHIL_ADCS_F_GYRO = 2,          /* gyro rate not finite or > 100 rad/s: held rate propagates, wheels zeroed */
    OHIL_ADCS_F_MAG = 4,           /* magnetometer not finite, zero or > 1e-3 T: no mag correction, dipole zeroed */
    OHIL_ADCS_F_SUN = 8,           /* sun flagged valid but vector not finite or not unit: ignored */
    OHIL_ADCS_F_REF = 16,          /* sun_eci not unit (zero = absent), b_eci_t / r_eci_m / v_eci_m_s not finite or implausible */
    OHIL_ADCS_F_WHEEL_SPEED = 32,  /* wheel speed not finite or > 10x max: wheels zeroed */
    OHIL_ADCS_F_MODE = 64,         /* unknown commanded mode: treated as DETUMBLE */
    OHIL_ADCS_F_WHEEL_SAT = 128,   /* a wheel torque or speed limit was hit */
    OHIL_ADCS_F_DIPOLE_SAT = 256,  /* the dipole command was scaled down to its limit */
    OHIL_ADCS_F_INTERNAL = 512     /* a computed command was not finite: zeroed (never expected) */
};

/* config error codes (ohil_adcs_init); ohil_error_field() names the field */
enum {
    OHIL_ADCS_E_INERTIA = 101,
    OHIL_ADCS_E_WHEEL_INERTIA = 102,
    OHIL_ADCS_E_WHEEL_MAX_TORQUE = 103,
    OHIL_ADCS_E_WHEEL_MAX_SPEED = 104,
    OHIL_ADCS_E_DIPOLE_MAX = 105,
    OHIL_ADCS_E_BDOT_GAIN = 106,
    OHIL_ADCS_E_ATT_WN = 107,
    OHIL_ADCS_E_ATT_ZETA = 108,
    OHIL_ADCS_E_MAX_SLEW_RATE = 109,
    OHIL_ADCS_E_UNLOAD_GAIN = 110,
    OHIL_ADCS_E_ARRAY_NORMAL = 111,
    OHIL_ADCS_E_SEARCH_AXIS = 112,
    OHIL_ADCS_E_SEARCH_RATE = 113,
    OHIL_ADCS_E_K_SUN = 114,
    OHIL_ADCS_E_K_MAG = 115,
    OHIL_ADCS_E_K_BIAS = 116,
    OHIL_ADCS_E_MAX_BIAS = 117,
    OHIL_ADCS_E_MAX_DT = 118,
    OHIL_ADCS_E_ATT_HOLD = 119,
    OHIL_ADCS_E_NULL = 199
};

typedef struct {
    double inertia_kgm2[3];          /* principal moments (body axes), > 0 */
    double wheel_inertia_kgm2;       /* each wheel, about its spin axis, > 0 */
    double wheel_max_torque_nm;      /* per wheel, > 0 */
    double wheel_max_speed_rad_s;    /* per wheel, > 0 */
    double dipole_max_am2;           /* per magnetorquer, > 0 */
    double bdot_gain;                /* A m^2 s / T: m = -k dB/dt, > 0 */
    double att_wn_rad_s;             /* pointing loop natural frequency, > 0 */
    double att_zeta;                 /* pointing loop damping ratio, > 0 */
    double max_slew_rate_rad_s;      /* rate-command saturation, > 0 */
    double unload_gain_per_s;        /* cross-product unloading gain, >= 0 */
    double array_normal_body[3];     /* solar array normal, unit */
    double search_axis_body[3];      /* sun-search spin axis, unit, perpendicular to array normal */
    double search_rate_rad_s;        /* sun-search spin rate, > 0 and <= max_slew_rate_rad_s */
    double k_sun;                    /* filter gain on the sun vector, rad/s, >= 0 */
    double k_mag;                    /* filter gain on the field direction, rad/s, >= 0 */
    double k_bias;                   /* filter bias integral gain, 1/s: d(bias)/dt = -k_bias * correction, >= 0 */
    double max_bias_rad_s;           /* bias estimate clamp, > 0 */
    double max_dt_s;                 /* largest accepted step, > 0 */
    double att_hold_s;               /* estimate trusted this long after the last sun fix, >= 0 */
} ohil_adcs_cfg;

typedef struct {
    double q_bi[4];
    double bias_rad_s[3];
    double rate_rad_s[3];            /* last bias-corrected gyro rate */
    double b_prev_body_t[3];         /* last valid field, for finite-difference B-dot */
    double time_since_sun_s;         /* since the last valid sun vector */
    double wheel_torque_cmd_nm[3];
    double dipole_cmd_am2[3];
    int32_t att_init;                /* q_bi initialized by TRIAD */
    int32_t have_b_prev;
} ohil_adcs_state;

typedef struct {
    double dt_s;
    double rate_rad_s[3];            /* gyro, body */
    double b_body_t[3];              /* magnetometer, body, tesla */
    double sun_body[3];              /* sun sensor, body, unit */
    int32_t sun_valid;               /* sun sensor sees the sun (0 in eclipse) */
    int32_t mode;                    /* OHIL_ADCS_MODE_* */
    double sun_eci[3];               /* reference: sun direction, inertial, unit */
    double b_eci_t[3];               /* reference: field, inertial, tesla */
    double r_eci_m[3];               /* nadir target: position, inertial */
    double v_eci_m_s[3];             /* nadir target: velocity, inertial */
    double wheel_speed_rad_s[3];     /* measured wheel speeds */
} ohil_adcs_in;

typedef struct {
    double q_bi[4];                  /* attitude estimate */
    double rate_rad_s[3];            /* rate estimate (gyro minus bias), body */
    double bias_rad_s[3];            /* gyro bias estimate */
    double wheel_torque_cmd_nm[3];   /* motor torque per wheel */
    double dipole_cmd_am2[3];        /* magnetorquer dipole, body */
    double pointing_error_rad;       /* angle to the mode's target; -1 when undefined */
    int32_t sun_valid;               /* a usable sun vector this step */
    int32_t att_valid;               /* attitude estimate initialized and trusted */
    int32_t mode;                    /* mode actually run */
    uint32_t fault_flags;            /* OHIL_ADCS_F_* */
} ohil_adcs_out;

int ohil_adcs_init(const ohil_adcs_cfg *cfg);
void ohil_adcs_reset(const ohil_adcs_cfg *cfg, ohil_adcs_state *st);
void ohil_adcs_step(const ohil_adcs_cfg *cfg, ohil_adcs_state *st,
                    const ohil_adcs_in *in, ohil_adcs_out *out);
void ohil_adcs_step_batch(const ohil_adcs_cfg *cfg, ohil_adcs_state *st,
                          const ohil_adcs_in *in, ohil_adcs_out *out, size_t n);

/* A sensor/actuator port in C, for frames run without leaving C (a simulator
 * whose sensor models and actuators are C, or drivers on the spacecraft).
 * sense(ctx, s) reads the sensors for the next frame into OHIL_ADCS_SENSE_N
 * doubles: rate_rad_s[3], b_body_t[3], sun_body[3], sun_valid (0 or 1),
 * wheel_speed_rad_s[3]. actuate(ctx, a) takes OHIL_ADCS_ACT_N doubles:
 * dipole_cmd_am2[3], wheel_torque_cmd_nm[3]. */
#define OHIL_ADCS_SENSE_N 13
#define OHIL_ADCS_ACT_N 6
typedef void (*ohil_adcs_sense_fn)(void *ctx, double *s);
typedef void (*ohil_adcs_actuate_fn)(void *ctx, const double *a);

/* n frames through a port: each one senses, steps with the sensed fields set in
 * `in` (dt_s, mode and the references as the caller left them) and actuates.
 * Bit for bit the same as n ohil_adcs_step calls with those inputs; `in` and
 * `out` hold the last frame's. */
void ohil_adcs_run_port(const ohil_adcs_cfg *cfg, ohil_adcs_state *st, ohil_adcs_in *in,
                        ohil_adcs_out *out, size_t n, ohil_adcs_sense_fn sense,
                        ohil_adcs_actuate_fn actuate, void *ctx);

#endif /* OHIL_ADCS_H */
