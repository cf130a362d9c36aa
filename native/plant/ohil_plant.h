/* orbit-hil spacecraft plant (ground code, NOT flight code).
 *
 * The rig's physics hot loop: rigid body with reaction wheels and magnetorquers,
 * solar arrays, battery, lumped thermal nodes. Kept apart from the flight core
 * (native/src): it models the world the flight software lives in.
 * C99, no heap, no mutable statics. Wrapped by hil_rig/plant.py; see docs/rig.md.
 *
 * Conventions: SI units. Body axes are principal axes. q_bi is scalar-first
 * Hamilton and rotates inertial (TEME) to body: v_b = R(q) v_i.
 */
#ifndef OHIL_PLANT_H
#define OHIL_PLANT_H

#include <stddef.h>

#define OHIL_PLANT_NODES 4
#define OHIL_PLANT_MAX_PANELS 8
#define OHIL_PLANT_MAX_SURFACES 12
#define OHIL_PLANT_MAX_LINKS 12
#define OHIL_PLANT_MAX_OCV 16
/* doubles per environment row: r_teme_m[3], sun_unit_teme[3], b_teme_t[3],
   solar_flux_w_m2, albedo_flux_w_m2, earth_ir_flux_w_m2 */
#define OHIL_PLANT_ENV_STRIDE 12

/* config error codes (one per field group) */
#define OHIL_PLANT_OK 0
#define OHIL_PLANT_E_INERTIA 1
#define OHIL_PLANT_E_WHEEL 2
#define OHIL_PLANT_E_MTQ 3
#define OHIL_PLANT_E_PANELS 4
#define OHIL_PLANT_E_OCV 5
#define OHIL_PLANT_E_BATTERY 6
#define OHIL_PLANT_E_THERMAL 7
#define OHIL_PLANT_E_LINKS 8
#define OHIL_PLANT_E_SURFACES 9
#define OHIL_PLANT_E_CONSTANTS 10

typedef struct {
    double normal[3];
    double area_m2;
} ohil_plant_panel_t;

typedef struct {
    int node;
    double normal[3];
    double area_m2;
    double absorptivity;
    double emissivity;
} ohil_plant_surface_t;

typedef struct {
    int a;
    int b;
    double g_w_k;
} ohil_plant_link_t;

typedef struct {
    double inertia_kg_m2[3];
    double wheel_inertia_kg_m2;
    double wheel_max_torque_nm;
    double wheel_max_speed_rad_s;
    double wheel_viscous_nm_s;
    double wheel_coulomb_nm;
    double wheel_power_w;
    double mtq_max_dipole_am2;
    double mtq_power_w;
    int gravity_gradient;
    int n_panels;
    ohil_plant_panel_t panels[OHIL_PLANT_MAX_PANELS];
    double solar_efficiency;
    double solar_temp_coeff_per_k;
    double solar_ref_temp_k;
    int n_ocv;
    double ocv_soc[OHIL_PLANT_MAX_OCV];
    double ocv_v[OHIL_PLANT_MAX_OCV];
    double battery_r_ohm;
    double charge_efficiency;
    double max_charge_w;
    double capacity_c;
    double bus_base_w;
    double heat_capacity_j_k[OHIL_PLANT_NODES];
    int n_links;
    ohil_plant_link_t links[OHIL_PLANT_MAX_LINKS];
    int n_surfaces;
    ohil_plant_surface_t surfaces[OHIL_PLANT_MAX_SURFACES];
    /* physical constants, passed in from hil_rig/constants.py (defined once there) */
    double mu_m3_s2;
    double sigma_w_m2_k4;
    double space_temp_k;
    double solar_constant_w_m2; /* total solar irradiance at 1 AU: the sun sensors' full-scale flux */
} ohil_plant_config_t;

typedef struct {
    double q_bi[4];
    double pi_body_nms[3];        /* total angular momentum (body + wheels), body frame */
    double wheel_speed_rad_s[3];
    double charge_c;
    double temps_k[OHIL_PLANT_NODES]; /* payload, battery, radiator, structure */
    double battery_a;
    double battery_v;
    double solar_w;
    double load_w;
    /* energy ledger (J): solar, load, shunt, unmet, battery heat, stored */
    double ledger_j[6];
} ohil_plant_state_t;

typedef struct {
    double wheel_torque_nm[3];
    double mtq_dipole_am2[3];
    double heater_w;
    int wheel_stuck[3];
    double hot_case;
    double capacity_ratio;
} ohil_plant_cmd_t;

/* Sensor models (the rig's, not flight code): noise and bias parameters. */
typedef struct {
    double gyro_noise_rad_s;
    double gyro_bias_rad_s[3]; /* the unit's own bias, drawn from the seed */
    double mag_noise_t;
    double css_full_scale_a;
    double css_noise_frac;
    double temp_noise_k;
    double power_noise_frac;
} ohil_plant_sensor_config_t;

/* doubles written by ohil_plant_sense: gyro_rad_s[3], mag_body_t[3],
   css_a[6] (+x, -x, +y, -y, +z, -z), sun_body[3], sun_valid (0 or 1),
   battery_v, battery_a, solar_w, temps_k[4] */
#define OHIL_PLANT_READINGS 23

int ohil_plant_check(const ohil_plant_config_t *cfg);
double ohil_plant_ocv(const ohil_plant_config_t *cfg, double soc);
void ohil_plant_step(const ohil_plant_config_t *cfg, ohil_plant_state_t *st,
                     const ohil_plant_cmd_t *cmd, const double *env,
                     double payload_w, double dt_s);
void ohil_plant_run(const ohil_plant_config_t *cfg, ohil_plant_state_t *st,
                    const ohil_plant_cmd_t *cmd, const double *env,
                    const double *payload_w, size_t n, double dt_s);

/* Sensor readings from the state after the last step, under the environment row
 * `env` of that step (NULL: none) with its illumination. Standard-normal noise:
 * n_gyro[3], n_mag[3], n_css[6], n_meas[7] (temps 0..3, battery V, battery A,
 * solar W). Fault inputs: gyro and magnetometer biases, dead sun sensors; stuck
 * and dead gyro/magnetometer are the caller's (they need the last reading). */
void ohil_plant_sense(const ohil_plant_config_t *cfg, const ohil_plant_state_t *st,
                      const ohil_plant_sensor_config_t *sc, const double *env, double illum,
                      const double fault_gyro_bias[3], const double fault_mag_bias[3], int css_dead,
                      const double n_gyro[3], const double n_mag[3], const double n_css[6],
                      const double n_meas[7], double out[OHIL_PLANT_READINGS]);

/* A C sensor/actuator port for the flight core's ADCS (ohil_adcs_run_port in
 * native/include/ohil_adcs.h; the double layouts below are those of
 * OHIL_ADCS_SENSE_N and OHIL_ADCS_ACT_N): every sense steps the plant by one
 * row of `env` under the command in force, then reads the sensors as
 * ohil_plant_sense does, taking the next row of each noise stream. The gyro
 * and magnetometer are read as is (a caller with a stuck or dead one does not
 * use the port). The readings of the last frame stay in `out`. */
#define OHIL_PLANT_PORT_SENSE_N 13
#define OHIL_PLANT_PORT_ACT_N 6
typedef struct {
    const ohil_plant_config_t *cfg;
    ohil_plant_state_t *st;
    ohil_plant_cmd_t *cmd;
    const ohil_plant_sensor_config_t *sc;
    const double *env;      /* the next step's environment row (advanced per frame) */
    const double *illum;    /* its illumination (advanced per frame) */
    double payload_w;
    double dt_s;
    const double *gyro_bias;
    const double *mag_bias;
    int css_dead;
    const double *n_gyro;   /* the next noise rows: 3, 3, 6 and 7 doubles a frame */
    const double *n_mag;
    const double *n_css;
    const double *n_meas;
    size_t frames;          /* frames sensed through this port */
    double out[OHIL_PLANT_READINGS];
} ohil_plant_port_t;

void ohil_plant_port_sense(void *ctx, double *s);
void ohil_plant_port_actuate(void *ctx, const double *a);

#endif
