/* Spacecraft plant: see ohil_plant.h and docs/rig.md. */
#include "ohil_plant.h"

#include <math.h>

static double clamp(double x, double lo, double hi) { return x < lo ? lo : (x > hi ? hi : x); }

static void cross3(const double a[3], const double b[3], double out[3])
{
    out[0] = a[1] * b[2] - a[2] * b[1];
    out[1] = a[2] * b[0] - a[0] * b[2];
    out[2] = a[0] * b[1] - a[1] * b[0];
}

static double dot3(const double a[3], const double b[3]) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

static void rotate_to_body(const double q[4], const double v[3], double out[3])
{
    const double w = q[0], x = q[1], y = q[2], z = q[3];
    out[0] = (1 - 2 * (y * y + z * z)) * v[0] + 2 * (x * y - w * z) * v[1] + 2 * (x * z + w * y) * v[2];
    out[1] = 2 * (x * y + w * z) * v[0] + (1 - 2 * (x * x + z * z)) * v[1] + 2 * (y * z - w * x) * v[2];
    out[2] = 2 * (x * z - w * y) * v[0] + 2 * (y * z + w * x) * v[1] + (1 - 2 * (x * x + y * y)) * v[2];
}

int ohil_plant_check(const ohil_plant_config_t *c)
{
    int k;
    for (k = 0; k < 3; ++k)
        if (!(c->inertia_kg_m2[k] > 0)) return OHIL_PLANT_E_INERTIA;
    if (!(c->wheel_inertia_kg_m2 > 0) || !(c->wheel_max_torque_nm >= 0) || !(c->wheel_max_speed_rad_s > 0) ||
        !(c->wheel_viscous_nm_s >= 0) || !(c->wheel_coulomb_nm >= 0))
        return OHIL_PLANT_E_WHEEL;
    if (!(c->mtq_max_dipole_am2 > 0)) return OHIL_PLANT_E_MTQ;
    if (c->n_panels < 0 || c->n_panels > OHIL_PLANT_MAX_PANELS) return OHIL_PLANT_E_PANELS;
    if (c->n_ocv < 2 || c->n_ocv > OHIL_PLANT_MAX_OCV) return OHIL_PLANT_E_OCV;
    for (k = 1; k < c->n_ocv; ++k)
        if (!(c->ocv_soc[k] > c->ocv_soc[k - 1])) return OHIL_PLANT_E_OCV;
    if (!(c->battery_r_ohm > 0) || !(c->charge_efficiency > 0 && c->charge_efficiency <= 1) ||
        !(c->capacity_c > 0) || !(c->max_charge_w >= 0))
        return OHIL_PLANT_E_BATTERY;
    for (k = 0; k < OHIL_PLANT_NODES; ++k)
        if (!(c->heat_capacity_j_k[k] > 0)) return OHIL_PLANT_E_THERMAL;
    if (c->n_links < 0 || c->n_links > OHIL_PLANT_MAX_LINKS) return OHIL_PLANT_E_LINKS;
    for (k = 0; k < c->n_links; ++k)
        if (c->links[k].a < 0 || c->links[k].a >= OHIL_PLANT_NODES || c->links[k].b < 0 ||
            c->links[k].b >= OHIL_PLANT_NODES || !(c->links[k].g_w_k >= 0))
            return OHIL_PLANT_E_LINKS;
    if (c->n_surfaces < 0 || c->n_surfaces > OHIL_PLANT_MAX_SURFACES) return OHIL_PLANT_E_SURFACES;
    for (k = 0; k < c->n_surfaces; ++k)
        if (c->surfaces[k].node < 0 || c->surfaces[k].node >= OHIL_PLANT_NODES) return OHIL_PLANT_E_SURFACES;
    if (!(c->mu_m3_s2 > 0) || !(c->sigma_w_m2_k4 > 0) || !(c->space_temp_k >= 0) ||
        !(c->solar_constant_w_m2 > 0)) return OHIL_PLANT_E_CONSTANTS;
    return OHIL_PLANT_OK;
}

double ohil_plant_ocv(const ohil_plant_config_t *c, double soc)
{
    int k;
    if (soc <= c->ocv_soc[0]) return c->ocv_v[0];
    if (soc >= c->ocv_soc[c->n_ocv - 1]) return c->ocv_v[c->n_ocv - 1];
    for (k = 1; k < c->n_ocv; ++k) {
        if (soc <= c->ocv_soc[k]) {
            double f = (soc - c->ocv_soc[k - 1]) / (c->ocv_soc[k] - c->ocv_soc[k - 1]);
            return c->ocv_v[k - 1] + f * (c->ocv_v[k] - c->ocv_v[k - 1]);
        }
    }
    return c->ocv_v[c->n_ocv - 1];
}

/* Exact rotation of the body about principal axis k for dt at the rate the
   momentum gives: body components of the inertial momentum turn by -phi, and
   q <- q_k(-phi) (x) q. */
static void rotate_about(const ohil_plant_config_t *c, ohil_plant_state_t *s, int k, double dt)
{
    const int i = (k + 1) % 3, j = (k + 2) % 3;
    const double w = (s->pi_body_nms[k] - c->wheel_inertia_kg_m2 * s->wheel_speed_rad_s[k]) / c->inertia_kg_m2[k];
    const double phi = w * dt;
    const double cp = cos(phi), sp = sin(phi);
    const double pi = s->pi_body_nms[i], pj = s->pi_body_nms[j];
    const double a0 = cos(-0.5 * phi), av = sin(-0.5 * phi);
    double e[3] = {0.0, 0.0, 0.0};
    double qv[3], cr[3];
    const double w0 = s->q_bi[0];
    s->pi_body_nms[i] = cp * pi + sp * pj;
    s->pi_body_nms[j] = -sp * pi + cp * pj;
    e[k] = av;
    qv[0] = s->q_bi[1];
    qv[1] = s->q_bi[2];
    qv[2] = s->q_bi[3];
    cross3(e, qv, cr);
    s->q_bi[0] = a0 * w0 - av * qv[k];
    s->q_bi[1] = a0 * qv[0] + w0 * e[0] + cr[0];
    s->q_bi[2] = a0 * qv[1] + w0 * e[1] + cr[1];
    s->q_bi[3] = a0 * qv[2] + w0 * e[2] + cr[2];
}

void ohil_plant_step(const ohil_plant_config_t *c, ohil_plant_state_t *s, const ohil_plant_cmd_t *cmd,
                     const double *env, double payload_w, double dt)
{
    const double *r_i = env, *sun_i = env + 3, *b_i = env + 6;
    const double flux = env[9], albedo = env[10], ir = env[11];
    const double jw = c->wheel_inertia_kg_m2;
    const double half = 0.5 * dt;
    const double r_norm = sqrt(dot3(r_i, r_i));
    double nadir_i[3], n_b[3], s_b[3], b_b[3], i_n[3], t_gg[3], m[3], t_mtq[3], t_ext[3], w_torque[3];
    double k_gg, solar = 0.0, mtq_w, load, net, cap, soc, ocv, shunt = 0.0, unmet = 0.0, current, eta, dq, soc1;
    double stored, batt_heat, q_in[OHIL_PLANT_NODES], t_old[OHIL_PLANT_NODES];
    int k;

    nadir_i[0] = -r_i[0] / r_norm;
    nadir_i[1] = -r_i[1] / r_norm;
    nadir_i[2] = -r_i[2] / r_norm;
    rotate_to_body(s->q_bi, nadir_i, n_b);
    rotate_to_body(s->q_bi, sun_i, s_b);
    rotate_to_body(s->q_bi, b_i, b_b);

    /* external torques: gravity gradient + magnetorquers */
    k_gg = c->gravity_gradient ? 3.0 * c->mu_m3_s2 / (r_norm * r_norm * r_norm) : 0.0;
    for (k = 0; k < 3; ++k) i_n[k] = c->inertia_kg_m2[k] * n_b[k];
    cross3(n_b, i_n, t_gg);
    for (k = 0; k < 3; ++k) m[k] = clamp(cmd->mtq_dipole_am2[k], -c->mtq_max_dipole_am2, c->mtq_max_dipole_am2);
    cross3(m, b_b, t_mtq);
    for (k = 0; k < 3; ++k) t_ext[k] = k_gg * t_gg[k] + t_mtq[k];

    /* wheels: limited motor torque, friction, speed limit, stuck */
    for (k = 0; k < 3; ++k) {
        const double ws = s->wheel_speed_rad_s[k];
        double tm, fr, nt;
        w_torque[k] = 0.0;
        if (cmd->wheel_stuck[k]) continue;
        tm = clamp(cmd->wheel_torque_nm[k], -c->wheel_max_torque_nm, c->wheel_max_torque_nm);
        if ((ws >= c->wheel_max_speed_rad_s && tm > 0) || (ws <= -c->wheel_max_speed_rad_s && tm < 0)) tm = 0.0;
        fr = c->wheel_viscous_nm_s * ws + (ws != 0.0 ? copysign(c->wheel_coulomb_nm, ws) : 0.0);
        nt = tm - fr;
        if (ws != 0.0 && tm == 0.0 && fabs(nt) * dt / jw > fabs(ws)) nt = -ws * jw / dt;
        w_torque[k] = nt;
    }

    for (k = 0; k < 3; ++k) {
        s->pi_body_nms[k] += t_ext[k] * half;
        if (!cmd->wheel_stuck[k]) s->wheel_speed_rad_s[k] += w_torque[k] / jw * half;
    }
    rotate_about(c, s, 0, half);
    rotate_about(c, s, 1, half);
    rotate_about(c, s, 2, dt);
    rotate_about(c, s, 1, half);
    rotate_about(c, s, 0, half);
    for (k = 0; k < 3; ++k) {
        s->pi_body_nms[k] += t_ext[k] * half;
        if (!cmd->wheel_stuck[k]) s->wheel_speed_rad_s[k] += w_torque[k] / jw * half;
    }

    /* power */
    if (flux > 0.0) {
        double eff = c->solar_efficiency * (1.0 + c->solar_temp_coeff_per_k * (s->temps_k[3] - c->solar_ref_temp_k));
        if (eff < 0.0) eff = 0.0;
        for (k = 0; k < c->n_panels; ++k) {
            const double cs = dot3(c->panels[k].normal, s_b);
            if (cs > 0) solar += flux * c->panels[k].area_m2 * cs * eff;
        }
    }
    mtq_w = (fabs(m[0]) + fabs(m[1]) + fabs(m[2])) / c->mtq_max_dipole_am2 * c->mtq_power_w;
    load = c->bus_base_w + payload_w + cmd->heater_w + 3 * c->wheel_power_w + mtq_w;
    net = solar - load;
    cap = c->capacity_c * cmd->capacity_ratio;
    soc = s->charge_c / cap;
    ocv = ohil_plant_ocv(c, soc);
    if (net > 0) {
        const double charge_w = soc < 1.0 ? (net < c->max_charge_w ? net : c->max_charge_w) : 0.0;
        shunt = net - charge_w;
        net = charge_w;
    } else {
        const double pmax = ocv * ocv / (4 * c->battery_r_ohm);
        if (soc <= 0.0) {
            unmet = -net;
            net = 0.0;
        } else if (-net > pmax) {
            unmet = -net - pmax;
            net = -pmax;
        }
    }
    if (net != 0.0) {
        const double disc = ocv * ocv + 4 * c->battery_r_ohm * net;
        current = (-ocv + sqrt(disc > 0.0 ? disc : 0.0)) / (2 * c->battery_r_ohm);
    } else {
        current = 0.0;
    }
    eta = current > 0 ? c->charge_efficiency : 1.0;
    dq = eta * current * dt;
    if (s->charge_c + dq > cap) dq = cap - s->charge_c;
    if (s->charge_c + dq < 0) dq = -s->charge_c;
    soc1 = (s->charge_c + dq) / cap;
    stored = 0.5 * (ocv + ohil_plant_ocv(c, soc1)) * dq;
    s->charge_c += dq;
    batt_heat = current * current * c->battery_r_ohm + (1 - eta) * ocv * current;
    s->ledger_j[0] += solar * dt;
    s->ledger_j[1] += (load - unmet) * dt;
    s->ledger_j[2] += shunt * dt;
    s->ledger_j[3] += unmet * dt;
    s->ledger_j[4] += batt_heat * dt;
    s->ledger_j[5] += stored;
    s->battery_a = current;
    s->battery_v = ocv + current * c->battery_r_ohm;
    s->solar_w = solar;
    s->load_w = load - unmet;

    /* thermal: explicit Euler */
    for (k = 0; k < OHIL_PLANT_NODES; ++k) t_old[k] = s->temps_k[k];
    q_in[0] = payload_w;
    q_in[1] = batt_heat + cmd->heater_w;
    q_in[2] = 0.0;
    q_in[3] = c->bus_base_w + 3 * c->wheel_power_w + mtq_w;
    for (k = 0; k < c->n_surfaces; ++k) {
        const ohil_plant_surface_t *sf = &c->surfaces[k];
        const double cs = dot3(sf->normal, s_b), cn = dot3(sf->normal, n_b);
        const double t = t_old[sf->node];
        double absorbed = 0.0;
        if (cs > 0) absorbed += sf->absorptivity * sf->area_m2 * flux * cs;
        if (cn > 0) absorbed += (sf->absorptivity * albedo + sf->emissivity * ir) * sf->area_m2 * cn;
        q_in[sf->node] += cmd->hot_case * absorbed -
                          sf->emissivity * c->sigma_w_m2_k4 * sf->area_m2 *
                              (t * t * t * t - c->space_temp_k * c->space_temp_k * c->space_temp_k * c->space_temp_k);
    }
    for (k = 0; k < c->n_links; ++k) {
        const double qq = c->links[k].g_w_k * (t_old[c->links[k].a] - t_old[c->links[k].b]);
        q_in[c->links[k].a] -= qq;
        q_in[c->links[k].b] += qq;
    }
    for (k = 0; k < OHIL_PLANT_NODES; ++k) s->temps_k[k] = t_old[k] + q_in[k] / c->heat_capacity_j_k[k] * dt;
}

void ohil_plant_run(const ohil_plant_config_t *c, ohil_plant_state_t *s, const ohil_plant_cmd_t *cmd,
                    const double *env, const double *payload_w, size_t n, double dt)
{
    size_t i;
    for (i = 0; i < n; ++i) ohil_plant_step(c, s, cmd, env + i * OHIL_PLANT_ENV_STRIDE, payload_w[i], dt);
}

void ohil_plant_sense(const ohil_plant_config_t *c, const ohil_plant_state_t *st,
                      const ohil_plant_sensor_config_t *sc, const double *env, double illum,
                      const double fault_gyro_bias[3], const double fault_mag_bias[3], int css_dead,
                      const double n_gyro[3], const double n_mag[3], const double n_css[6],
                      const double n_meas[7], double out[OHIL_PLANT_READINGS])
{
    /* Written to round exactly as the Python model it replaced did (same
       operations in the same order), so a seed gives the same readings. */
    const double jw = c->wheel_inertia_kg_m2;
    double b_b[3] = {0.0, 0.0, 0.0}, s_b[3] = {0.0, 0.0, 0.0}, v[3], nv, flux_ratio = 0.0;
    int k;

    for (k = 0; k < 3; ++k)
        out[k] = (st->pi_body_nms[k] - jw * st->wheel_speed_rad_s[k]) / c->inertia_kg_m2[k] +
                 sc->gyro_bias_rad_s[k] + fault_gyro_bias[k] + sc->gyro_noise_rad_s * n_gyro[k];
    if (env == NULL) {
        illum = 0.0;
    } else {
        rotate_to_body(st->q_bi, env + 6, b_b);
        rotate_to_body(st->q_bi, env + 3, s_b);
        if (illum > 0) flux_ratio = env[9] / (illum > 1e-12 ? illum : 1e-12) / c->solar_constant_w_m2;
    }
    for (k = 0; k < 3; ++k) out[3 + k] = b_b[k] + fault_mag_bias[k] + sc->mag_noise_t * n_mag[k];
    for (k = 0; k < 6; ++k) {
        const double cosine = (k % 2 == 0) ? s_b[k / 2] : -s_b[k / 2];
        double g;
        out[6 + k] = 0.0;
        if (css_dead || cosine <= 0.0 || illum <= 0.0) continue;
        g = 1.0 + sc->css_noise_frac * n_css[k];
        if (g > 0.0) out[6 + k] = sc->css_full_scale_a * cosine * illum * flux_ratio * g;
    }
    v[0] = out[6] - out[7];
    v[1] = out[8] - out[9];
    v[2] = out[10] - out[11];
    nv = sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
    out[15] = nv > 0.1 * sc->css_full_scale_a ? 1.0 : 0.0;
    for (k = 0; k < 3; ++k) out[12 + k] = out[15] != 0.0 ? v[k] / nv : 0.0;
    out[16] = st->battery_v * (1 + sc->power_noise_frac * n_meas[4]);
    out[17] = st->battery_a * (1 + sc->power_noise_frac * n_meas[5]);
    out[18] = st->solar_w * (1 + sc->power_noise_frac * n_meas[6]);
    for (k = 0; k < 4; ++k) out[19 + k] = st->temps_k[k] + sc->temp_noise_k * n_meas[k];
}

void ohil_plant_port_sense(void *ctx, double *s)
{
    ohil_plant_port_t *p = ctx;
    ohil_plant_step(p->cfg, p->st, p->cmd, p->env, p->payload_w, p->dt_s);
    ohil_plant_sense(p->cfg, p->st, p->sc, p->env, *p->illum, p->gyro_bias, p->mag_bias, p->css_dead,
                     p->n_gyro, p->n_mag, p->n_css, p->n_meas, p->out);
    p->env += OHIL_PLANT_ENV_STRIDE;
    p->illum += 1;
    p->n_gyro += 3;
    p->n_mag += 3;
    p->n_css += 6;
    p->n_meas += 7;
    p->frames += 1;
    for (int i = 0; i < 3; ++i) {
        s[i] = p->out[i];            /* gyro */
        s[3 + i] = p->out[3 + i];    /* magnetometer */
        s[6 + i] = p->out[12 + i];   /* sun vector */
        s[10 + i] = p->st->wheel_speed_rad_s[i];
    }
    s[9] = p->out[15] != 0.0 ? 1.0 : 0.0;
}

void ohil_plant_port_actuate(void *ctx, const double *a)
{
    ohil_plant_port_t *p = ctx;
    for (int i = 0; i < 3; ++i) {
        p->cmd->mtq_dipole_am2[i] = a[i];
        p->cmd->wheel_torque_nm[i] = a[3 + i];
    }
}
