/* The three loops of one spacecraft, stepped per frame or in batches. */
#include "ohil_core.h"

int ohil_flight_init(const ohil_flight_cfg *cfg)
{
    if (cfg == NULL) return OHIL_ADCS_E_NULL;
    int e = ohil_adcs_init(&cfg->adcs);
    if (e == 0) e = ohil_eps_init(&cfg->eps);
    if (e == 0) e = ohil_therm_init(&cfg->therm);
    return e;
}

void ohil_flight_reset(const ohil_flight_cfg *cfg, ohil_flight_state *st)
{
    ohil_adcs_reset(&cfg->adcs, &st->adcs);
    ohil_eps_reset(&cfg->eps, &st->eps);
    ohil_therm_reset(&cfg->therm, &st->therm);
}

void ohil_flight_step(const ohil_flight_cfg *cfg, ohil_flight_state *st, const ohil_flight_in *in,
                      ohil_flight_out *out)
{
    ohil_adcs_step(&cfg->adcs, &st->adcs, &in->adcs, &out->adcs);
    ohil_eps_step(&cfg->eps, &st->eps, &in->eps, &out->eps);
    ohil_therm_step(&cfg->therm, &st->therm, &in->therm, &out->therm);
}

void ohil_flight_step_batch(const ohil_flight_cfg *cfg, ohil_flight_state *st,
                            const ohil_flight_in *in, ohil_flight_out *out, size_t n)
{
    for (size_t k = 0; k < n; ++k) ohil_flight_step(cfg, st, &in[k], &out[k]);
}

void ohil_flight_run_n(const ohil_flight_cfg *cfg, ohil_flight_state *st, const ohil_flight_in *in,
                       size_t n_in, ohil_flight_out *out, size_t n)
{
    if (n_in == 0) return;
    size_t j = 0;
    for (size_t k = 0; k < n; ++k) {
        ohil_flight_step(cfg, st, &in[j], out);
        if (++j == n_in) j = 0;
    }
}
